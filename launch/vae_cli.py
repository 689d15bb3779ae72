"""``reverie collect``, ``reverie fit-vae`` and ``reverie evaluate-vae``: data, training and evaluation of the
binary-latent VAE (:mod:`worldmodels.vae`). :func:`register` adds the three commands to the CLI.

The training loop is :func:`worldmodels.vae.train.fit_vae`; the evaluation is
:func:`worldmodels.vae.evaluate.evaluate_vae`. This module only wires them to the command line.
"""

from __future__ import annotations

import argparse
import json

from launch.config import add_config_arguments, preset_names

#: What `reverie collect` prints on Ctrl-C (what was kept and how to go on).
COLLECT_INTERRUPT_HINT = ("interrupted: every finished episode was kept in --out (shards and a manifest marked "
                          "'complete': false); run the same command again with --resume to collect only the "
                          "missing frames")


# ------------------------------------------------------------------------------------------- commands
def _frame_size(text: str) -> tuple[int, int]:
    """``"84x84"`` -> ``(84, 84)``. :raises ValueError: not HEIGHTxWIDTH with positive sizes."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--frame-size {text!r}: give HEIGHTxWIDTH in pixels, e.g. 84x84 or 210x160.")
    return int(parts[0]), int(parts[1])


def cmd_collect(args: argparse.Namespace) -> int:
    from launch.collect import collect

    manifest = collect(args.game, args.out, args.frames, policy=args.policy, actors=args.actors,
                       envs_per_actor=args.envs_per_actor, seed=args.seed, heldout_fraction=args.heldout_fraction,
                       preset=args.preset, epsilon=args.epsilon, shard_frames=args.shard_frames,
                       ray_address=args.ray_address, progress=not args.no_progress,
                       frame_size=_frame_size(args.frame_size), rgb=args.rgb, resume=args.resume)
    summary = {"out": args.out, "game": manifest["game"], **manifest["counts"], "shards": len(manifest["shards"]),
               "emulator_frames": manifest["emulator_frames"], "wall_seconds": manifest["wall_seconds"]}
    print(json.dumps(summary))
    return 0


def cmd_fit_vae(args: argparse.Namespace) -> int:
    from launch.config import run_fit
    from worldmodels.vae import VAEFitConfig
    from worldmodels.vae.config import RESUME_SAFE_KEYS
    from worldmodels.vae.train import fit_vae

    return run_fit(VAEFitConfig, args, RESUME_SAFE_KEYS, fit_vae)


def usage_lines(report: dict) -> list[str]:
    """The latent-usage lines of an evaluate-vae report (active units, the largest KLs, a collapse warning)."""
    if "active_units" not in report:
        return []
    kls = ", ".join(f"{v:.2f}" for v in report["kl_per_dim_sorted"][:8])
    lines = [f"active units: {report['active_units']} of {report['latents']} (posterior-mean variance over frames > "
             f"{report['active_threshold']:g}); KL {report['kl_total']:.2f} nats, largest per latent: {kls}"]
    if report.get("collapse_warning"):
        lines.append(f"warning: {report['collapse_warning']}")
    return lines


def cmd_evaluate_vae(args: argparse.Namespace) -> int:
    from worldmodels.common.runrecord import check_run_command, run_kind

    kind = run_kind(args.run)
    if kind is not None and kind[0] == "fit-gvae":
        from worldmodels.representations.train_gvae import evaluate_gvae

        report = evaluate_gvae(args.run, args.data, frames=args.frames or 0, seed=args.seed,
                               skip_corrupt=args.skip_corrupt, active_threshold=args.active_threshold)
        if args.json:
            print(json.dumps(report))
            return 0
        print(f"Gaussian VAE, {report['heldout_frames']} held-out frames, {report['steps_trained']} updates trained")
        print(f"negative ELBO {report['elbo_nats']:.1f} nats per frame ({report['nats_per_pixel']:.4f} per pixel), "
              f"KL {report['kl']:.2f}; posterior spread {report['posterior_spread']:.4f} against its std "
              f"{report['posterior_std']:.4f}")
        print("\n".join([*usage_lines(report), f"images: {report['reconstructions_png']}"]))
        return 0
    from worldmodels.vae.evaluate import evaluate_vae

    check_run_command(args.run, "fit-vae", usage="reverie evaluate-vae")
    ks = tuple(int(k) for k in args.ks.split(","))
    report = evaluate_vae(args.run, args.data, ks=ks, frames=args.frames, seed=args.seed,
                          skip_corrupt=args.skip_corrupt, active_threshold=args.active_threshold)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['game']}: {report['heldout_frames']} held-out frames, {report['image_size']}x"
              f"{report['image_size']} binary, estimator {report['estimator']}, "
              f"{report['frames_trained']} frames trained")
        print(f"{'bound':>10} {'NLL nats/frame':>15} {'bits/pixel':>11}")
        for k, v in report["iwae_nats"].items():
            name = "ELBO" if k == "1" else f"IWAE {k}"
            print(f"{name:>10} {v:15.2f} {report['iwae_bits_per_pixel'][k]:11.4f}")
        print("\n".join(usage_lines(report)))
        print(f"images: {report['prior_samples_png']}, {report['reconstructions_png']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``collect``, ``fit-vae`` and ``evaluate-vae`` to the ``reverie`` subparsers."""
    p = sub.add_parser("collect", help="record trajectories of play into a dataset (Ray actors)",
                       description="Play GAME with a random or DQN policy on Ray actors and write the newest frame "
                                   "of every observation, actions, raw rewards and episode ends as shards + "
                                   "manifest.json; train and held-out episodes in separate files.")
    p.add_argument("game", help="Atari game (Pong, ALE/Pong-v5, pong) or toy/catch")
    p.add_argument("--policy", default="random", help="'random' or a DQN run directory / checkpoint")
    p.add_argument("--frames", type=int, required=True, help="frames to store (emulator frames are 4x more)")
    p.add_argument("--out", required=True, help="dataset folder (must not exist or be empty, unless --resume)")
    p.add_argument("--actors", type=int, default=2, help="Ray actors (0: in-process, no Ray)")
    p.add_argument("--envs-per-actor", type=int, default=8, help="envs in each actor's vector env")
    p.add_argument("--seed", type=int, default=0, help="actor i seeds its envs with seed + 1000 (i + 1)")
    p.add_argument("--heldout-fraction", type=float, default=0.1, help="share of frames in held-out episodes")
    p.add_argument("--preset", default="machado", help="Atari preset: machado or nature")
    p.add_argument("--epsilon", type=float, default=0.05, help="exploration of a DQN policy")
    p.add_argument("--shard-frames", type=int, default=10_000, help="frames per shard (whole episodes)")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    p.add_argument("--frame-size", default="84x84", help="HEIGHTxWIDTH of stored frames (210x160: the full screen)")
    p.add_argument("--rgb", action="store_true", help="store RGB frames [T, H, W, 3] instead of luminance "
                                                       "(the video-prediction paper's input; random policy only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted collection in --out: keep its shards and collect only the frames "
                        "still missing (same game, preset, policy, seed, frame settings and held-out fraction; "
                        "does nothing on a finished dataset)")
    # Printed by `reverie` on Ctrl-C instead of the trainers' "last checkpoint" message: collect has no checkpoint.
    p.set_defaults(func=cmd_collect, interrupt_hint=COLLECT_INTERRUPT_HINT)

    p = sub.add_parser("fit-vae", help="train a binary-latent VAE on a collected dataset",
                       description="Train worldmodels.vae.BinaryVAE. CONFIG is a YAML path or a preset name "
                                   f"({', '.join(preset_names('vae'))}); key=value pairs override it, e.g. "
                                   "estimator.name=vimco estimator.samples=5 data.path=data/pong.")
    add_config_arguments(p)
    p.set_defaults(func=cmd_fit_vae)

    p = sub.add_parser("evaluate-vae", help="held-out ELBO and IWAE bounds, active units, samples and "
                                            "reconstructions",
                       description="Score held-out frames of DIR with the newest checkpoint of RUN_DIR: negative "
                                   "log-likelihood bounds (ELBO and importance-weighted, K samples) in nats per "
                                   "frame and bits per pixel; active units and KL per latent, with a warning if "
                                   "fewer than half are active (collapse); PNG grids of prior samples and "
                                   "reconstructions. A fit-gvae run (MFEC's Gaussian VAE) gets its ELBO, active "
                                   "units and reconstructions.")
    p.add_argument("run", metavar="RUN_DIR", help="fit-vae or fit-gvae run directory or checkpoint file")
    p.add_argument("--active-threshold", type=float, default=0.01,
                   help="a latent is active when its posterior mean's variance over frames exceeds this (Burda et "
                        "al. 2015)")
    p.add_argument("--data", required=True, help="dataset folder (its held-out split is scored)")
    p.add_argument("--ks", default="1,10,100,1000", help="sample counts K, each dividing the next")
    p.add_argument("--frames", type=int, default=200, help="held-out frames scored (evenly spaced; 0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior and prior samples")
    p.add_argument("--skip-corrupt", action="store_true", help="skip corrupt shards (named in a warning)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate_vae)
