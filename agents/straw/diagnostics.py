"""Why a STRAW run learns as it does: where its gradient comes from, and how good its critic is when it commits.

``python -m launch.straw_diagnostics RUN_DIR [--unrolls N] [--init] [key=value ...]`` loads the run's newest
checkpoint (``--init``: a freshly initialised network of the same config instead), lets one actor collect
``N`` unrolls with it, and for each unroll backpropagates every term of the A2C objective on its own:

- the gradient norm each term sends to each part of the network: the feature extractor, the planning module
  (``f_psi``: the attention parameters, ``h``: the MLP, ``f_p``: the written patch) and the commitment module
  (``f_c`` and the bias ``commit_bias``; Vezhnevets et al. 2016, Sec. 3.1-3.2), averaged over the unrolls;
- the squared error of the value estimate against its A2C target (the n-step return bootstrapped at the unroll's
  end, ``agent.gae_lambda``) on re-planning steps and on committed steps separately: on a committed step the value
  is the plan's value row written at the last re-plan, a guess made without seeing the current observation;
- where the action plan's attention sits (``agents.straw.attention``, eq. 22-25 of DRAW), over the observations of
  the unrolls: the grid's centre, its first filter's centre, the stride (plan columns, 1-based), and the weight a
  unit patch writes into the current step's column (0: the network can no longer change its policy or value).

It prints a table, or one JSON object with ``--json``. The figures of README's STRAW section come from it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

#: Parts of the network the gradient is broken down by: the top-level module name under ``core`` (or the network).
PARTS = ("features", "f_psi", "h", "f_p", "f_c", "commit_bias")
TERMS = ("policy", "value", "entropy", "core")


def _part(name: str) -> str:
    """The part of parameter ``name`` (``core.f_psi.weight`` -> ``f_psi``; STRAWe's ``z_mu``/``z_log_sigma``
    count as features: they map the features to the noisy code)."""
    head = name.split(".")[1] if name.startswith("core.") else name.split(".")[0]
    return "features" if head in ("z_mu", "z_log_sigma") else head


def gradient_breakdown(cfg: Any, weights: dict[str, torch.Tensor] | None, unrolls: int = 20,
                       seed: int = 11) -> dict[str, Any]:
    """The figures of the module docstring for the STRAW network ``weights`` (None: fresh initialisation).

    :param cfg: the run's :class:`agents.straw.config.StrawConfig`.
    :param unrolls: unrolls of ``agent.unroll_length`` steps x ``env.num_envs`` envs to average over.
    :returns: ``{"grad_norm": {term: {part: norm}}, "value_sq_error": {"replan": x, "committed": y},
        "steps": {"replan": n, "committed": m}, "committed_fraction": m / (n + m),
        "macro_action_length": (n + m) / n, "replan_prob": {"mean", "std", "p10", "p90"} (c_{t-1}[0] on the steps
        that are not game starts), "attention": {"centre", "first_filter", "stride",
        "column0_weight", "gamma"}}`` (means); a term's ``"all"`` part is its norm over every parameter.
    """
    from agents.actor_critic.actor import make_ac_parts
    from agents.actor_critic.learning import ActorCriticLearner, Batch, log_prob_entropy
    from agents.actor_critic.returns import gae_advantages
    from agents.runtime.actor import EnvActor
    from agents.runtime.algorithm import env_spec
    from agents.straw.attention import attention_params, filterbank
    from agents.straw.network import STRAWNetwork

    actor = EnvActor(0, make_ac_parts, cfg, seed=seed)
    learner = ActorCriticLearner(env_spec(actor.env), cfg, torch.device("cpu"))
    if weights is not None:
        learner.network.load_state_dict(weights)
    actor.policy.set_weights(learner.get_weights())
    net, agent = learner.network, cfg.agent
    if not isinstance(net, STRAWNetwork):
        raise ValueError(f"the STRAW diagnostics need a STRAW config (algo: straw), got algo: {cfg.algo}")
    groups: dict[str, list[torch.nn.Parameter]] = defaultdict(list)
    for name, param in net.named_parameters():
        groups[_part(name)].append(param)
    sums: dict[tuple[str, str], float] = defaultdict(float)
    errors: dict[str, list[np.ndarray]] = {"replan": [], "committed": []}
    attention: dict[str, list[float]] = defaultdict(list)
    probs: list[np.ndarray] = []
    core = net.core
    for _ in range(unrolls):
        unroll = actor.run(agent.unroll_length, 0, None, 0).payload
        b = Batch(unroll, torch.device("cpu"))
        out = net.replay(b.obs, b.state, b.starts, b.actions, b.rewards, b.inputs, bootstrap_grad=False)
        log_p, entropy = log_prob_entropy(out.logits[:-1], b.actions)
        values_d = out.values.detach()
        adv = gae_advantages(b.rewards, b.discounts, b.carry, values_d, agent.gae_lambda)
        targets = adv + values_d[:-1]
        mask, count = b.mask, b.mask.sum().clamp(min=1.0)
        terms = {"policy": -(log_p * adv * mask).sum() / count,
                 "value": agent.value_coef * 0.5 * (((targets - out.values[:-1]) ** 2) * mask).sum() / count,
                 "entropy": -agent.entropy_coef * (entropy * mask).sum() / count}
        if out.aux_loss is not None:
            terms["core"] = (out.aux_loss[:-1] * mask).sum() / count
        for term, loss in terms.items():
            net.zero_grad(set_to_none=True)
            loss.backward(retain_graph=True)
            total = 0.0
            for part, params in groups.items():
                sq = sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None)
                sums[(term, part)] += sq ** 0.5
                total += sq
            sums[(term, "all")] += total ** 0.5
        with torch.no_grad():
            x = core.features(b.obs[:-1].reshape(-1, *b.obs.shape[2:]))
            att = attention_params(core.f_psi(core.z_mu(x) if core.noisy else x), core.plan_len, core.num_filters,
                                   core.attention_window, core.intensity_bound)
            first = att.centre - (core.num_filters - 1) / 2.0 * att.stride  # filter 1 (eq. 19, 1-based)
            weight = filterbank(att, core.plan_len, core.num_filters)[:, :, 0].sum(1) / att.gamma
        for name, value in (("centre", att.centre), ("first_filter", first), ("stride", att.stride),
                            ("column0_weight", weight), ("gamma", att.gamma)):
            attention[name].append(float(value.mean()))
        if out.per_step is not None and "replan_prob" in out.per_step:
            # c_{t-1}[0] on steps that are not game starts (forced to 1 there): its spread says whether the
            # commitment module re-plans per state or as one number for all.
            free = ~b.starts[:-1].bool() & mask.bool()
            probs.append(out.per_step["replan_prob"][:-1][free].numpy())
        if out.per_step is not None and "gates" in out.per_step:
            replan = out.per_step["gates"][:-1].bool() & mask.bool()
            sq_err = (targets - values_d[:-1]) ** 2
            errors["replan"].append(sq_err[replan].numpy())
            errors["committed"].append(sq_err[~replan & mask.bool()].numpy())
    actor.close()
    grad = {term: {part: sums[(term, part)] / unrolls for part in ("all", *groups)}
            for term in TERMS if (term, "all") in sums}
    flat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in errors.items()}
    steps = {k: int(len(v)) for k, v in flat.items()}
    total = steps["replan"] + steps["committed"]
    return {"grad_norm": grad,
            "value_sq_error": {k: float(v.mean()) if len(v) else float("nan") for k, v in flat.items()},
            "steps": steps,
            # The same figures as the charts/ tags of a run, over these unrolls' steps.
            "committed_fraction": steps["committed"] / max(total, 1),
            "macro_action_length": total / max(steps["replan"], 1),
            "replan_prob": _spread(np.concatenate(probs) if probs else np.zeros(0)),
            "attention": {k: float(np.mean(v)) for k, v in attention.items()}}


def _spread(values: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation and the 10th and 90th percentiles of ``values`` (NaN when empty)."""
    if len(values) == 0:
        return {"mean": float("nan"), "std": float("nan"), "p10": float("nan"), "p90": float("nan")}
    return {"mean": float(values.mean()), "std": float(values.std()), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90))}


def format_breakdown(result: dict[str, Any]) -> str:
    parts = list(next(iter(result["grad_norm"].values())))
    lines = ["gradient norm per term (rows) and part of the network (columns), mean over unrolls:",
             f"  {'':<9}" + "".join(f"{p:>12}" for p in parts)]
    for term, norms in result["grad_norm"].items():
        lines.append(f"  {term:<9}" + "".join(f"{norms[p]:>12.3g}" for p in parts))
    lines.append("value error^2 against the A2C target:")
    for kind, err in result["value_sq_error"].items():
        lines.append(f"  {kind:<10} steps: {err:.3g} (n = {result['steps'][kind]})")
    lines.append(f"committed fraction {result['committed_fraction']:.3f}, macro-action length "
                 f"{result['macro_action_length']:.2f} steps per re-plan")
    p = result["replan_prob"]
    lines.append(f"re-planning probability c_(t-1)[0] over the states (game starts left out): mean {p['mean']:.3f}, "
                 f"std {p['std']:.3f}, 10-90% {p['p10']:.3f}-{p['p90']:.3f}")
    a = result["attention"]
    lines.append(f"attention of the action plan (columns, 1-based): centre {a['centre']:.1f}, first filter "
                 f"{a['first_filter']:.1f}, stride {a['stride']:.2f}, intensity gamma {a['gamma']:.3g}; "
                 f"a unit patch writes {a['column0_weight']:.3g} into the current step's column")
    return "\n".join(lines)
