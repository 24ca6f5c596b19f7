"""A-NeRF and the impulse-response field: the pieces the paper describes, checked one by one."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from soundstage.field.irfield import IRField, IRFieldConfig, delay  # noqa: E402
from soundstage.field.model import ANeRF, ANeRFConfig, DirectionEmbedding, Encoding, anerf_loss  # noqa: E402

SMALL = dict(hidden=16, layers=2, pos_freqs=2, freq_freqs=3, conv_channels=4)


def test_encoding_values():
    enc = Encoding(2, 3)
    x = torch.tensor([[0.25, -0.5]])
    y = enc(x)[0]
    assert enc.out_dim == 2 * 7 == y.numel()
    np.testing.assert_allclose(y[:2], [0.25, -0.5])
    # sin terms ordered (dim, octave): sin(2^k pi x)
    np.testing.assert_allclose(y[2:8], [math.sin(math.pi * 2 ** k * v) for v in (0.25, -0.5) for k in range(3)],
                               atol=1e-6)


def test_direction_embedding_anchors_interpolation_and_wrap():
    torch.manual_seed(0)
    emb = DirectionEmbedding(4, 3, 5)
    anchors = torch.tensor([-math.pi, -math.pi / 2, 0.0, math.pi / 2])
    out = emb(anchors)
    torch.testing.assert_close(out, emb.table.detach(), atol=1e-6, rtol=0)
    # Half-way between "ahead" (k=2) and "left" (k=3) is their mean.
    torch.testing.assert_close(emb(torch.tensor([math.pi / 4]))[0], 0.5 * (emb.table[2] + emb.table[3]))
    # The circle wraps: +pi equals -pi, and just below +pi blends "left" into "behind".
    torch.testing.assert_close(emb(torch.tensor([math.pi]))[0], emb.table[0], atol=1e-6, rtol=0)
    near = emb(torch.tensor([math.pi - 1e-4]))[0]
    torch.testing.assert_close(near, emb.table[0], atol=1e-3, rtol=0)
    # Continuous everywhere (no jump between anchors).
    a = torch.linspace(-math.pi, math.pi, 2001)
    steps = (emb(a[1:]) - emb(a[:-1])).abs().max()
    assert steps < 0.01


def test_factorised_query_equals_a_linear_layer_on_the_concatenation():
    torch.manual_seed(1)
    m = ANeRF(ANeRFConfig(**SMALL, conv=False))
    pos = torch.rand(3, 3) * 2 - 1
    pe, fe = m.pos_enc(pos), m.freq_enc(m.freqs)
    cat = torch.cat([pe[:, None, :].expand(-1, fe.shape[0], -1), fe[None].expand(3, -1, -1)], -1)
    W = torch.cat([m.query_pos.weight, m.query_freq.weight], 1)
    ref = cat @ W.T + m.query_pos.bias
    got = m.query_pos(pe)[:, None, :] + m.query_freq(fe)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_masks_shapes_ranges_and_mixing_identities():
    torch.manual_seed(2)
    m = ANeRF(ANeRFConfig(**SMALL, conv=False))
    B, T, F = 4, 7, m.n_bins
    pos, az = torch.rand(B, 3), torch.rand(B) * 6 - 3
    mix, diff = m.masks(pos, az)
    assert mix.shape == diff.shape == (B, F)
    assert diff.abs().max() < 1
    src = torch.rand(B, T, F)
    out = m.apply_masks(src, mix, diff)
    mono = src * mix[:, None]
    L, R = mono * (1 + diff[:, None]), mono * (1 - diff[:, None])
    torch.testing.assert_close(out["mono"], mono)
    torch.testing.assert_close(out["binaural"], torch.relu(torch.stack([L, R], 1)))
    # Masks per frame that do not change reproduce the per-clip result.
    per_frame = m.apply_masks(src, mix[:, None].expand(B, T, F), diff[:, None].expand(B, T, F))
    torch.testing.assert_close(per_frame["binaural"], out["binaural"])


def test_direction_changes_only_the_difference_mask():
    torch.manual_seed(3)
    m = ANeRF(ANeRFConfig(**SMALL, conv=False))
    pos = torch.rand(1, 3).expand(2, 3)
    mix, diff = m.masks(pos, torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(mix[0], mix[1])
    assert (diff[0] - diff[1]).abs().max() > 1e-4
    ablated = ANeRF(ANeRFConfig(**SMALL, conv=False, use_direction=False))
    _, d = ablated.masks(pos, torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(d[0], d[1])


def test_refinement_is_applied_per_ear_and_keeps_shapes():
    torch.manual_seed(4)
    m = ANeRF(ANeRFConfig(**SMALL, conv=True))
    out = m(torch.rand(2, 9, m.n_bins), torch.rand(2, 3), torch.rand(2))
    assert out["binaural"].shape == (2, 2, 9, m.n_bins) and out["binaural"].min() >= 0
    loss = anerf_loss(out, torch.rand(2, 2, 9, m.n_bins))
    loss.backward()
    assert m.refine.net[0].weight.grad.abs().sum() > 0


def test_scene_features_are_required_when_configured():
    m = ANeRF(ANeRFConfig(**SMALL, scene_dim=5))
    with pytest.raises(ValueError, match="scene features"):
        m.masks(torch.rand(1, 3), torch.rand(1))
    mix, _ = m.masks(torch.rand(1, 3), torch.rand(1), torch.rand(1, 5))
    assert mix.shape == (1, m.n_bins)


def test_irfield_output_shape_ears_and_direct_sound():
    torch.manual_seed(5)
    cfg = IRFieldConfig(hidden=16, layers=2, ir_samples=2000)
    f = IRField(cfg)
    z = torch.zeros(3)
    y = f(torch.rand(3, 3), torch.rand(3), z, torch.ones(3))
    assert y.shape == (3, 2, cfg.n_frames, cfg.n_fft // 2 + 1)
    # The direct sound's energy falls off as 1/d^2: where it dominates (large direct
    # gain), doubling the distance lowers the log magnitude by log 2.
    with torch.no_grad():
        f.diff_out.bias[cfg.n_frames:] = 5.0
    pos, az = torch.rand(1, 3).expand(2, 3), torch.zeros(2)
    y = f(pos, az, torch.zeros(2), torch.tensor([1.0, 2.0]))
    head = y[:, :, 0:3]  # the frames whose windows hold the aligned onset
    torch.testing.assert_close(head[0] - head[1], torch.full_like(head[0], math.log(2.0)), atol=1e-3, rtol=0)
    # Later frames hold no direct sound and do not depend on the distance.
    torch.testing.assert_close(y[0, :, 20:], y[1, :, 20:])


def test_early_render_field_adds_the_rest_to_the_engines_early_response():
    """With ``early_render`` the prior (B, 2, T, F) is the response wherever it dominates; without it the field refuses."""
    torch.manual_seed(6)
    cfg = IRFieldConfig(hidden=16, layers=2, ir_samples=2000, early_render=True)
    f = IRField(cfg)
    T, F = cfg.n_frames, cfg.n_fft // 2 + 1
    with torch.no_grad():
        f.diff_out.bias[T:] = 0.0  # the prior's gain: 1 (the output layer has no direct-sound slots here)
        f.diff_out.weight[T:] = 0.0
    assert f.diff_out.out_features == T + 2
    args = (torch.rand(2, 3), torch.rand(2), torch.zeros(2), torch.ones(2))
    prior = torch.full((2, 2, T, F), -40.0)
    prior[:, 0, :5] = 4.0  # a loud early response in the left ear's first frames
    y = f(*args, prior=prior)
    torch.testing.assert_close(y[:, 0, :5], torch.full_like(y[:, 0, :5], 2.0), atol=1e-3, rtol=0)  # 0.5 * log energy
    assert (y[:, 1, :5] < 0).all()  # the right ear only has the (quiet) rest
    with pytest.raises(ValueError, match="early response"):
        f(*args)
    with pytest.raises(ValueError, match="early response"):
        f(*args, prior=prior[:, 0])  # the head-free (B, T, F) prior is not it


def test_fractional_delay_is_exact_for_band_limited_signals():
    n = 4000
    t = np.arange(n)
    f0 = 0.013  # cycles per sample, well below Nyquist

    def tone(shift):  # a windowed tone whose envelope is flat in the middle
        return np.sin(2 * np.pi * f0 * (t - shift)) * np.exp(-(((t - shift) - 2000) / 600.0) ** 4)

    x = torch.as_tensor(tone(0.0))[None, None]
    for s in (12.37, -30.5, 0.0):
        y = delay(x, torch.tensor([s]), n)[0, 0].numpy()
        np.testing.assert_allclose(y[200:-200], tone(s)[200:-200], atol=2e-6)


def test_reflection_prior_is_the_six_mirror_images_of_a_shoebox():
    """Order 1 in a shoebox: six images mirrored in the walls, 1/r^2, wall energy loss, at (r - d)/c."""
    from soundstage.field.data import DEFAULT_ROOM, SPEED_OF_SOUND
    from soundstage.field.irfield import impulse_profile, reflection_prior
    from soundstage.materials import resolve_material

    cfg = IRFieldConfig(prior_order=1, ir_samples=4000)
    src, lis = np.array([3.7, 2.3, 1.2]), np.array([1.5, 1.0, 1.6])
    lo, hi = np.array(DEFAULT_ROOM["min"]), np.array(DEFAULT_ROOM["max"])
    mats = DEFAULT_ROOM["materials"]
    expected = np.zeros((cfg.n_frames, cfg.n_fft // 2 + 1))
    d = np.linalg.norm(lis - src)
    k = 6  # bin 6: 1034 Hz
    f_k = k * cfg.sample_rate / cfg.n_fft
    bands = np.log2([125, 250, 500, 1000, 2000, 4000, 8000])
    for axis in range(3):
        for wall, side in ((lo[axis], "lo"), (hi[axis], "hi")):
            img = src.copy()
            img[axis] = 2 * wall - src[axis]
            surface = "walls" if axis < 2 else ("floor" if side == "lo" else "ceiling")
            # the reflection's amplitude factor sqrt(1 - absorption) per octave band,
            # linear in log-frequency between band centres, at the bin's frequency
            amp = np.interp(np.log2(f_k), bands, np.sqrt(1 - resolve_material(mats[surface], "m").absorption))
            r = np.linalg.norm(lis - img)
            w = impulse_profile(cfg.pre_samples + (r - d) / SPEED_OF_SOUND * cfg.sample_rate, cfg)
            expected += w[:, None] * amp ** 2 / r ** 2
    got = np.exp(reflection_prior(DEFAULT_ROOM, src, lis[None], cfg)[0])
    np.testing.assert_allclose(got[:, k], expected[:, k], rtol=1e-3, atol=1e-9)
