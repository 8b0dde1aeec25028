"""The preference losses (DPO, IPO, hinge, SimPO, ORPO) as TRL 1.16 defines them, on summed
response log-probabilities: a few lines each, so written here rather than taken from TRL's
trainers (tunelab has one training loop)."""

from __future__ import annotations

from typing import Any

#: the losses that compare the policy with a reference model
REFERENCE_LOSSES = ("dpo", "ipo", "hinge")


def log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable on both sides of -ln 2 (as TRL's ORPO)."""
    import torch

    return torch.where(
        x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x))
    )


def preference_losses(s: dict[str, Any], pc, pr, nc, nr, rc=None, rr=None):
    """``(loss, per-pair losses, chosen rewards, rejected rewards)`` of a batch of pairs.

    ``pc``/``pr``: summed log-probabilities of the chosen/rejected responses under the policy,
    ``nc``/``nr`` their token counts, ``rc``/``rr`` the reference's (dpo, ipo, hinge). Each loss
    as TRL 1.16 writes it; ``dpo`` with label smoothing ε is conservative DPO,
    -(1-ε)·logσ(βΔ) - ε·logσ(-βΔ) (TRL's ``sigmoid`` at ε=0)."""
    import torch
    import torch.nn.functional as F

    loss_type, beta, eps = s["loss"], s["beta"], s["label_smoothing"]
    if loss_type in REFERENCE_LOSSES:
        dc, dr = pc - rc, pr - rr
        delta = dc - dr
        if loss_type == "dpo":
            per = -F.logsigmoid(beta * delta) * (1 - eps) - F.logsigmoid(-beta * delta) * eps
        elif loss_type == "hinge":
            per = torch.relu(1 - beta * delta)
        else:  # ipo: length-normalised log-ratios (TRL, confirmed with the IPO authors)
            per = (dc / nc.clamp(min=1) - dr / nr.clamp(min=1) - 1 / (2 * beta)) ** 2
        return per.mean(), per, beta * dc.detach(), beta * dr.detach()
    ac, ar = pc / nc.clamp(min=1), pr / nr.clamp(min=1)
    if loss_type == "simpo":  # CPOTrainer(loss_type="simpo", cpo_alpha=0)
        z = ac - ar - s["gamma"] / beta
        per = -F.logsigmoid(beta * z) * (1 - eps) - F.logsigmoid(-beta * z) * eps
        return per.mean(), per, beta * ac.detach(), beta * ar.detach()
    # orpo: the chosen responses' token-mean NLL, minus λ·logσ(log odds ratio)
    lam = s["orpo_lambda"]
    log_odds = (ac - ar) - (log1mexp(ac) - log1mexp(ar))
    ratio = lam * F.logsigmoid(log_odds)
    nll = -pc.sum() / nc.sum().clamp(min=1)
    per = -pc / nc.clamp(min=1) - ratio
    return nll - ratio.mean(), per, lam * ac.detach(), lam * ar.detach()
