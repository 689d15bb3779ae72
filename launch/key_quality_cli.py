"""``reverie key-quality``: score MFEC keys on a dataset of real episodes, without an agent run.

:func:`worldmodels.representations.quality.key_quality` does the work (see its module docstring for the measure);
this module wires it to the command line and prints the table.
"""

from __future__ import annotations

import argparse
import json


def format_table(report: dict) -> str:
    """The report as a text table: one row per key, learned keys first, then the random projections."""
    lines = [f"{report['data']}: {report['stored']} stored train frames, {report['queries']} held-out queries, "
             f"k = {report['k']}, gamma = {report['gamma']:g} (returns of complete episodes)",
             f"{'key':<58} {'dim':>4} {'active':>7} {'RMSE':>9} {'RMSE / mean':>12} {'Spearman':>9}"]
    for row in report["rows"]:
        active = f"{row['active_units']}/{row['latents']}" if "active_units" in row else "-"
        lines.append(f"{row['name'][:58]:<58} {row['dim']:>4} {active:>7} {row['rmse']:>9.2f} "
                     f"{row['rmse_ratio']:>12.3f} {row['spearman']:>9.3f}")
    lines.append("RMSE / mean: the k-NN prediction's error over that of predicting every frame by the mean stored "
                 "return (below 1: the key carries information about the return); Spearman: rank correlation of "
                 "predicted and true returns.")
    for row in report["rows"]:
        if row.get("collapsed"):
            lines.append(f"warning: {row['name']} is collapsed ({row['active_units']} of {row['latents']} latents "
                         f"active)")
    return "\n".join(lines)


def cmd_key_quality(args: argparse.Namespace) -> int:
    from worldmodels.representations.quality import key_quality

    report = key_quality(args.data, args.key, k=args.k, gamma=args.gamma, stored=args.stored, queries=args.queries,
                         projection_seeds=args.projection_seeds, dim=args.dim, seed=args.seed,
                         skip_corrupt=args.skip_corrupt)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``key-quality`` to the ``reverie`` subparsers."""
    p = sub.add_parser("key-quality", help="score MFEC keys by how well their nearest neighbours predict returns",
                       description="Store the keys of DATA's train frames with their discounted returns, predict "
                                   "each held-out frame's return as the mean of its k nearest stored keys' returns, "
                                   "and report the error against predicting the mean, and the rank correlation; "
                                   "for each --key and for random projections of the same size. Minutes, not an "
                                   "agent run.")
    p.add_argument("data", metavar="DATA", help="a `reverie collect` dataset of 84x84 luminance frames")
    p.add_argument("--key", action="append", default=[], metavar="KIND=PATH",
                   help="a learned key: gaussian_vae=RUN (fit-gvae) or binary_vae=RUN (fit-vae); repeatable")
    p.add_argument("--k", type=int, default=11, help="neighbours per query (MFEC: 11)")
    p.add_argument("--gamma", type=float, default=1.0, help="discount of the returns (MFEC writes undiscounted: 1)")
    p.add_argument("--stored", type=int, default=20_000, help="train frames stored (random subset; 0: all)")
    p.add_argument("--queries", type=int, default=2_000, help="held-out frames scored (random subset; 0: all)")
    p.add_argument("--projection-seeds", type=int, default=3, help="random projections per key size")
    p.add_argument("--dim", type=int, default=64, help="random projections' size when no --key is given")
    p.add_argument("--seed", type=int, default=0, help="seeds the subsets and the binary VAE's KL samples")
    p.add_argument("--skip-corrupt", action="store_true", help="skip corrupt shards (named in a warning)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_key_quality)
