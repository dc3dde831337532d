"""Growing a trained model: more channels, a context model, encoder blocks, each keeping what it learned.

Training compute is scarce, so a model grows instead of starting over: every
grow step returns a model computing the same function (or nearly, for new
latent channels), whose new parts start where training can pick them up.
The optimizer's state follows the tensors by name (`NamedAdam`), so a
grown model resumes its Adam moments, for a whole-model or an encoder-only
optimizer alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..autoencoder.model import ModelConfig, NicModel

# Scale the hyperprior predicts for grown latent channels before it learns them:
# about the spread of a trained channel's (un-gained) latents.
NEW_CHANNEL_SCALE = 0.4

# Where the entries of a smaller model's tensors sit in a grown model's tensors:
# per tensor name, (dimension, old positions) for each dimension that grew.
Placement = dict[str, tuple[tuple[int, Tensor], ...]]


def embed(old: Tensor, shape: torch.Size, spec: tuple[tuple[int, Tensor], ...], fill: float = 0.0) -> Tensor:
    """A tensor of `shape` filled with `fill`, holding `old` at the positions `spec` gives."""
    out = old
    for dim, idx in spec:
        size = list(out.shape)
        size[dim] = shape[dim]
        out = torch.full(size, fill, dtype=old.dtype).index_copy_(dim, idx, out)
    return out


def _placed(fresh: dict[str, Tensor], old: dict[str, Tensor], place: Placement) -> dict[str, Tensor]:
    """The grown model's state: old tensors moved into place, the rest of each from `fresh`."""
    state = {}
    for k, v in old.items():
        if k in place:
            mask = embed(torch.ones_like(v, dtype=torch.bool), fresh[k].shape, place[k], fill=False)
            state[k] = torch.where(mask, embed(v, fresh[k].shape, place[k]), fresh[k])
        else:
            state[k] = v.clone()
    return state


def with_context(model: NicModel, nc: int) -> NicModel:
    """The model with a checkerboard context model of `nc` channels, the same function.

    The context's output layer starts at zero, so it predicts no
    correction until training teaches it one; its first layer starts
    random so that the output layer gets gradients at once.
    """
    if model.context is not None:
        raise ValueError(f"the model has a context model already ({model.cfg.nc} channels)")
    return _with_new_modules(model, "nc", nc, zeroed=("context.out",))


def _with_new_modules(model: NicModel, field_name: str, value: int, zeroed: tuple[str, ...]) -> NicModel:
    """The model with config `field_name` set to `value`, which adds modules, the same function.

    Every tensor the model has keeps its values; of the new modules, the
    layers named in `zeroed` start at zero (weight and bias) so their
    output adds nothing, and the rest start random.
    """
    grown = NicModel(ModelConfig.from_dict({**model.cfg.to_dict(), field_name: value}))
    state = grown.state_dict()
    state.update(model.state_dict())
    with torch.no_grad():
        for name in zeroed:
            state[f"{name}.weight"].zero_()
            state[f"{name}.bias"].zero_()
    grown.load_state_dict(state)
    return grown


def with_encoder_blocks(model: NicModel, ne: int) -> NicModel:
    """The model with `ne` residual blocks on y in the analysis, the same function.

    New blocks' output layers start at zero (identity blocks); their first
    layers start random, so the output layers get gradients at once.
    """
    if ne <= model.cfg.ne:
        raise ValueError(f"can only add residual blocks to the analysis ({model.cfg.ne} -> {ne})")
    return _with_new_modules(model, "ne", ne, zeroed=tuple(f"g_a_res.{i}.conv2" for i in range(model.cfg.ne, ne)))


def widened(model: NicModel, m: int) -> tuple[NicModel, Placement]:
    """The model with `m` latent channels instead of cfg.m, nearly the same function.

    y's channel count caps the fidelity a model can reach at any rate (a
    128-channel y holds 1/6 of the values of its 16x16x3 block), so a model
    grows it and keeps training. New channels must start *alive*: their
    analysis filters and synthesis weights are random with the typical norm
    of the old ones (half of it for the synthesis), so their latents survive
    rounding and the synthesis gets gradients from them; tiny ones are
    rounded to zero, get no gradient and die under the rate penalty (seen
    here). The hyperprior ignores them at first and predicts mean 0 and a
    fixed scale; their gains are the per-level mean of the old ones.
    Returns the grown model and where the old entries went (`Placement`).
    """
    old_m = model.cfg.m
    if m <= old_m:
        raise ValueError(f"can only grow the latent channels ({old_m} -> {m})")
    grown = NicModel(ModelConfig.from_dict({**model.cfg.to_dict(), "m": m}))
    keep = torch.arange(old_m)
    hs_keep = torch.cat([keep, keep + m])  # h_s outputs are [means | scales]
    place: Placement = {
        "log_gain": ((1, keep),),
        "g_a.6.weight": ((0, keep),),
        "g_a.6.bias": ((0, keep),),
        "g_s.0.weight": ((0, keep),),
        "h_a.0.weight": ((1, keep),),
        "h_s.4.weight": ((0, hs_keep),),
        "h_s.4.bias": ((0, hs_keep),),
    }
    state = _placed(grown.state_dict(), model.state_dict(), place)
    with torch.no_grad():
        new = slice(old_m, m)
        for key, share in (("g_a.6.weight", 1.0), ("g_s.0.weight", 0.25)):
            w = state[key]
            norms = w[:old_m].flatten(1).norm(dim=1).mean()
            fresh = w[new] / w[new].flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
            state[key][new] = fresh * norms * share
        state["h_a.0.weight"][:, new] = 0
        state["h_s.4.weight"][new] = 0
        state["h_s.4.weight"][m + old_m :] = 0
        state["h_s.4.bias"][new] = 0
        state["h_s.4.bias"][m + old_m :] = NEW_CHANNEL_SCALE
        state["log_gain"][:, new] = model.log_gain.mean(dim=1, keepdim=True)
    grown.load_state_dict(state)
    return grown, place


def deepened(model: NicModel, n_deep: int) -> tuple[NicModel, Placement]:
    """The model with `n_deep` channels in its 1/8-resolution layers, the same function.

    Those layers hold about one value per pixel at n_deep=64, a bottleneck
    next to the 16 per pixel at 1/2 resolution, and they are cheap to widen
    because they run on 1/64 of the pixels. See `_with_more_channels`.
    """
    if n_deep <= model.cfg.n_deep:
        raise ValueError(f"can only widen the 1/8-resolution layers ({model.cfg.n_deep} -> {n_deep})")
    return _with_more_channels(
        model, "n_deep", n_deep, producers=("g_a.4", "g_s.0"), consumers=("g_a.6", "g_s.2"), gdns=("g_a.5", "g_s.1")
    )


def broadened(model: NicModel, n: int) -> tuple[NicModel, Placement]:
    """The model with `n` channels in its 1/2- and 1/4-resolution layers, the same function.

    Their width caps how much fine texture the transforms can reproduce at
    any rate (measured: benchmarks/ceiling.py); they are the expensive
    layers, so they grow last. See `_with_more_channels`.
    """
    if n <= model.cfg.n:
        raise ValueError(f"can only widen the 1/2- and 1/4-resolution layers ({model.cfg.n} -> {n})")
    return _with_more_channels(
        model,
        "n",
        n,
        producers=("g_a.0", "g_a.2", "g_s.2", "g_s.4"),
        consumers=("g_a.2", "g_a.4", "g_s.4", "g_s.6"),
        gdns=("g_a.1", "g_a.3", "g_s.3", "g_s.5"),
    )


def _with_more_channels(
    model: NicModel, field_name: str, count: int, producers: tuple, consumers: tuple, gdns: tuple
) -> tuple[NicModel, Placement]:
    """The model with `count` channels where `field_name` of the config had fewer, the same function.

    producers: convolutions whose outputs grow; consumers: those whose
    inputs grow (one may be both); gdns: the (inverse) GDNs between them.
    New channels get random filters at the old ones' typical norm (so they
    carry signal and learn), their own divisive normalisation only, and
    zero weights into the next layer, so the output is unchanged until
    training puts them to use.
    """
    old = getattr(model.cfg, field_name)
    grown = NicModel(ModelConfig.from_dict({**model.cfg.to_dict(), field_name: count}))
    keep = torch.arange(old)
    convs = dict(grown.named_modules())

    def out_dim(name: str) -> int:  # a transposed convolution's weight is (in, out, k, k)
        return 1 if isinstance(convs[name], nn.ConvTranspose2d) else 0

    place: Placement = {}
    for name in set(producers) | set(consumers):
        spec = []
        if name in producers:
            spec.append((out_dim(name), keep))
            place[f"{name}.bias"] = ((0, keep),)
        if name in consumers:
            spec.append((1 - out_dim(name), keep))
        place[f"{name}.weight"] = tuple(spec)
    for gdn in gdns:
        place |= {f"{gdn}.beta_sqrt": ((0, keep),), f"{gdn}.gamma_sqrt": ((0, keep), (1, keep))}
    state = _placed(grown.state_dict(), model.state_dict(), place)
    new = slice(old, count)
    with torch.no_grad():
        for name in producers:
            w = state[f"{name}.weight"].movedim(out_dim(name), 0)  # (out, in, k, k), a view into the state
            norm = w[:old].flatten(1).norm(dim=1).mean()
            fresh = w[new] / w[new].flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
            w[new] = fresh * norm
            state[f"{name}.bias"][new] = 0
        for name in consumers:  # old outputs ignore the new inputs (new outputs may read them)
            w = state[f"{name}.weight"].movedim(out_dim(name), 0)
            w[: old if name in producers else None, new] = 0
        for gdn in gdns:
            beta, gamma = state[f"{gdn}.beta_sqrt"], state[f"{gdn}.gamma_sqrt"]
            beta[new] = beta[:old].mean()
            gamma[new, :] = 0
            gamma[:, new] = 0
            gamma[new, new] = torch.eye(count - old) * gamma[:old, :old].diagonal().mean()
    grown.load_state_dict(state)
    return grown, place


# -- the optimizer's state ---------------------------------------------------------------


@dataclass
class NamedAdam:
    """Adam's state keyed by parameter name instead of position.

    A torch optimizer numbers its tensors in the order it was given them, which
    differs between a whole-model and an encoder-only run and changes when a
    model grows modules; by name, the moments follow their tensors through both.
    """

    state: dict[str, dict]  # parameter name -> Adam's state of that tensor
    group: dict  # the parameter group's settings (learning rate, betas, ...)

    @classmethod
    def of(cls, opt_state: dict, names: list[str]) -> NamedAdam | None:
        """From an optimizer's state_dict over the parameters `names` (in order); None if it does not fit them."""
        state = {}
        for i, st in opt_state["state"].items():
            if not 0 <= int(i) < len(names):
                return None
            state[names[int(i)]] = st
        return cls(state, {k: v for k, v in opt_state["param_groups"][0].items() if k != "params"})

    def for_optimizer(self, model: nn.Module, names: list[str]) -> dict:
        """The state_dict of an optimizer over `names` of `model` (in order); tensors without state start afresh."""
        shapes = dict(model.named_parameters())
        state = {}
        for i, name in enumerate(names):
            st = self.state.get(name)
            if st is not None and st["exp_avg"].shape == shapes[name].shape:
                state[i] = st
        return {"state": state, "param_groups": [dict(self.group, params=list(range(len(names))))]}

    def levels(self, nearest: Tensor) -> None:
        """Follow a new quality ladder: each new level takes the moments of its nearest old level."""
        if (st := self.state.get("log_gain")) is not None:
            st["exp_avg"], st["exp_avg_sq"] = st["exp_avg"][nearest], st["exp_avg_sq"][nearest]

    def grow(self, place: Placement, grown: nn.Module) -> None:
        """Carry the moments into grown tensors: zero momentum, the mean variance for new entries."""
        shapes = {k: v.shape for k, v in grown.named_parameters()}
        for k, spec in place.items():
            st = self.state.get(k)
            if st is None:
                continue
            avg = embed(st["exp_avg"], shapes[k], spec)
            sq = embed(st["exp_avg_sq"], shapes[k], spec, fill=st["exp_avg_sq"].mean().item())
            st["exp_avg"], st["exp_avg_sq"] = avg, sq
