"""The SDK on an NVIDIA GPU through ONNX Runtime's CUDA provider (``make test-gpu``).

Each test skips, with the reason, where there is no usable GPU or no
``onnxruntime-gpu``; on a GPU machine they check that the CUDA path runs the
shipped models on the GPU (not a quiet CPU fall back) and that its numbers are
the CPU's within the shipping gate (:func:`avatarizer.runtime.compare_outputs`:
the image model's mean |Δ| of the normalised parameters <= 0.01, as
``gate_report.json``'s ``param_l1``; the attribute regressor's probability
and age drift, as its manifest entry's gate).
"""
from __future__ import annotations

import numpy as np
import pytest

from avatarizer import runtime

pytestmark = pytest.mark.gpu

PARAM_L1 = 0.01


def _need_cuda():
    ok, why = runtime.cuda_status()
    if not ok:
        pytest.skip(f"no usable NVIDIA GPU: {why}")
    if "CUDAExecutionProvider" not in runtime.available_providers():
        pytest.skip(f"this onnxruntime has no CUDAExecutionProvider ({runtime.available_providers()}); "
                    "install onnxruntime-gpu (README 'GPU')")


@pytest.fixture(scope="module")
def crop128():
    from avatarizer.align import FaceAligner
    from avatarizer.imageio import sample_photo

    with FaceAligner(mode="image", max_faces=1, segmentation=False) as aligner:
        faces = aligner.detect(sample_photo())
    assert faces, "MediaPipe found no face in the bundled sample portrait"
    base = faces[0].crop(128)
    # the photo and three variations of it: brighter, darker, mirrored
    return np.stack([base, np.clip(base.astype(np.int16) + 40, 0, 255).astype(np.uint8),
                     (base * 0.6).astype(np.uint8), base[:, ::-1].copy()])


def test_preload_is_harmless_and_said_once():
    _need_cuda()
    first = runtime.preload_gpu_libraries()
    assert runtime.preload_gpu_libraries() == first  # once per process
    assert isinstance(first, str)


def test_every_shipped_model_runs_on_cuda_within_the_gate(crop128):
    _need_cuda()
    from avatarizer.pipeline.face import resize_aa

    manifest = runtime.Manifest.load()
    checked = 0
    for name in manifest:
        entry = manifest[name]
        if entry.kind != "onnx":
            continue
        spec = entry.inputs[0]
        x = runtime.normalise_images(resize_aa(crop128, int(spec["shape"][-1])), spec.get("normalisation") or {})
        gpu = runtime.Session.from_entry(entry, device="cuda")
        cpu = runtime.Session.from_entry(entry, device="cpu")
        assert gpu.providers[0] == "CUDAExecutionProvider", (name, gpu.providers)
        feed = gpu.input_names[0]
        want, got = cpu.run({feed: x}), gpu.run({feed: x})
        gate = runtime.compare_outputs(want, got, entry)
        assert gate["passed"], (name, gate)
        checked += 1
    assert checked >= 2, "the manifest lists fewer than two ONNX models"


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_avatarizer_on_cuda_draws_the_cpu_avatar(precision):
    _need_cuda()
    from avatarizer import Avatarizer, schema
    from avatarizer.imageio import sample_photo

    photo = sample_photo()
    try:
        gpu = Avatarizer(device="cuda", precision=precision)
    except ValueError as exc:  # this precision is not shipped
        pytest.skip(str(exc))
    with gpu, Avatarizer(device="cpu", precision=precision) as cpu:
        assert "CUDAExecutionProvider" in gpu.providers, gpu.providers
        a, b = cpu.from_frame(photo), gpu.from_frame(photo)
        assert a is not None and b is not None
        l1 = float(np.mean(np.abs(schema.normalize(a.params) - schema.normalize(b.params))))
        assert l1 <= PARAM_L1, l1
        diff = np.abs(a.render(256).astype(np.int16) - b.render(256).astype(np.int16))
        assert diff.mean() < 2.0, diff.mean()


def test_auto_takes_the_gpu():
    _need_cuda()
    from avatarizer import Avatarizer

    with Avatarizer(device="auto") as av:
        assert av.providers and av.providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider"), \
            av.providers
