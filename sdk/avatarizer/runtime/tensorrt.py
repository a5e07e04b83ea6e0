"""TensorRT backend: run an ``AVZENG1`` engine file written by ``avatarizer_export.tensorrt_build``.

An engine file is ``b"AVZENG1\\0"``, the length of a JSON description as a
uint32 little-endian, the JSON (the same description as in the ONNX files'
``metadata_props``), then the serialized TensorRT engine.
:class:`TensorRTSession` checks that header (and, given a manifest entry,
that it matches) before it hands the engine bytes to TensorRT.

Requirements, all imported lazily so that ``import avatarizer.runtime.tensorrt``
works everywhere: an NVIDIA GPU with its driver, the ``tensorrt`` Python
package (>= 10; ``pip install 'avatarizer[gpu]'``) and one library for CUDA
device buffers, tried in this order:

1. ``cuda-python`` (``cuda.bindings.runtime``, or ``cuda.cudart`` for
   cuda-python < 12.6): NVIDIA's own thin bindings to the CUDA runtime,
   torch-free; the ``tensorrt`` wheels' samples use it.
2. ``pycuda``: the classic choice, torch-free; it needs a CUDA toolkit to
   build from source on some platforms, hence second.
3. ``torch`` with CUDA, only when it is already installed (the export
   machines have it); the SDK never requires torch.

Where any of these is missing, constructing :class:`TensorRTSession` raises a
``RuntimeError`` that says which and why. :func:`cuda_status` answers "is
there a usable NVIDIA GPU?" without importing any of them (it asks the
driver, ``libcuda``, through ctypes).

Engines are specific to the GPU model and TensorRT version they were built
with; the header records both, and a refusal by TensorRT to deserialize is
reported with them.

Example::

    from avatarizer.runtime import TensorRTSession

    sess = TensorRTSession("models/image_to_face-fp16.engine")
    params = sess.run({"image": crops})["face_params"]
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ModelError
from .files import ENGINE_MAGIC, read_engine_header, read_verified_bytes
from .tensors import _TensorInfo, check_description_io, check_feed, check_io

__all__ = ["TensorRTSession", "cuda_status", "gpu_info", "tensorrt_status", "tensorrt_ep_status", "cuda_buffer_library",
           "ENGINE_MAGIC"]

MIN_TENSORRT_MAJOR = 10


def cuda_status() -> tuple[bool, str]:
    """(True, GPU description) when the NVIDIA driver reports at least one CUDA
    device; otherwise (False, the reason). Imports nothing heavy: it loads the
    driver library (``libcuda``) with ctypes and calls ``cuInit`` and
    ``cuDeviceGetCount``."""
    if sys.platform == "darwin":
        return False, "macOS has no CUDA driver"
    names = ["nvcuda.dll"] if os.name == "nt" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found and found not in names:
        names.append(found)
    lib = None
    errors = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            errors.append(str(exc))
    if lib is None:
        return False, ("the NVIDIA driver library (libcuda) could not be loaded: "
                       + "; ".join(errors))
    rc = lib.cuInit(0)
    if rc != 0:
        hint = {100: "CUDA_ERROR_NO_DEVICE", 999: "CUDA_ERROR_UNKNOWN", 35: "driver too old",
                3: "CUDA_ERROR_NOT_INITIALIZED"}.get(rc, "")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        extra = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        return False, f"cuInit failed with CUDA error {rc} {hint}{extra}".rstrip()
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0 or count.value < 1:
        return False, f"the NVIDIA driver reports no CUDA device (cuDeviceGetCount: rc={rc}, count={count.value})"
    name_buf = ctypes.create_string_buffer(256)
    device = ctypes.c_int(0)
    desc = f"{count.value} CUDA device(s)"
    if lib.cuDeviceGet(ctypes.byref(device), 0) == 0 and \
            lib.cuDeviceGetName(name_buf, 256, device) == 0:
        desc += f", device 0: {name_buf.value.decode(errors='replace')}"
    return True, desc


def gpu_info(device_id: int = 0) -> dict:
    """Name and compute capability of a CUDA device, asked of the driver through
    ctypes (no torch, no cuda-python); empty when there is no usable GPU."""
    ok, _ = cuda_status()
    if not ok:
        return {}
    lib = ctypes.CDLL("nvcuda.dll" if os.name == "nt" else "libcuda.so.1")
    device = ctypes.c_int(0)
    if lib.cuDeviceGet(ctypes.byref(device), device_id) != 0:
        return {}
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, 256, device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)  # ..._MINOR
    version = ctypes.c_int(0)
    lib.cuDriverGetVersion(ctypes.byref(version))
    return {"device": name.value.decode(errors="replace"), "compute_capability": f"{major.value}.{minor.value}",
            "cuda_driver": f"{version.value // 1000}.{version.value % 1000 // 10}"}


def tensorrt_status() -> tuple[bool, str]:
    """(True, version) when ``tensorrt`` >= 10 imports; otherwise (False, reason)."""
    try:
        import tensorrt as trt  # noqa: F401
    except ImportError as exc:
        return False, (f"the tensorrt Python package is not installed ({exc}); "
                       "pip install 'avatarizer[gpu]'")
    except Exception as exc:  # a broken install raises OSError etc. from its loader
        return False, f"the tensorrt Python package failed to import: {exc!r}"
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        return False, f"tensorrt {trt.__version__} is too old; need >= {MIN_TENSORRT_MAJOR}"
    return True, str(trt.__version__)


#: What ONNX Runtime's TensorRT execution provider links against (onnxruntime-gpu's
#: ``libonnxruntime_providers_tensorrt.so``: TensorRT 10's runtime and ONNX parser).
TRT_EP_LIBRARIES = ("libnvinfer.so.10", "libnvonnxparser.so.10")
@functools.lru_cache(maxsize=None)
def tensorrt_ep_status() -> tuple[bool, str]:
    """``(True, ...)`` when ONNX Runtime's TensorRT execution provider can load
    the TensorRT libraries it links against; ``(False, why)`` otherwise.

    ``onnxruntime-gpu`` lists ``TensorrtExecutionProvider`` whether or not
    TensorRT is installed; without it every session asked for that provider
    prints an "EP Error" banner and retries without it. The libraries are
    looked for on the loader path, then after ``import tensorrt`` (the
    ``tensorrt`` wheels load their own copies). Asked once per process."""
    if os.name == "nt":  # pragma: no cover - DLL names differ; ONNX Runtime reports it
        return True, "not checked on Windows"

    def missing() -> list[str]:
        out = []
        for name in TRT_EP_LIBRARIES:
            try:
                ctypes.CDLL(name)
            except OSError as exc:
                out.append(str(exc))
        return out

    gone = missing()
    if gone and tensorrt_status()[0]:
        gone = missing()
    if gone:
        return False, "TensorRT's libraries could not be loaded: " + "; ".join(gone)
    return True, "TensorRT libraries " + ", ".join(TRT_EP_LIBRARIES) + " load"


def require_tensorrt(who: str = "TensorRT needs"):
    """The ``tensorrt`` module, or ``RuntimeError`` saying what ``who``
    ("TensorRT needs", "TensorRT engines need") is missing: a CUDA GPU or a
    usable tensorrt package."""
    ok, reason = cuda_status()
    if not ok:
        raise RuntimeError(f"{who} an NVIDIA GPU with CUDA; none found: {reason}")
    ok, reason = tensorrt_status()
    if not ok:
        raise RuntimeError(f"{who} the tensorrt Python package (>= {MIN_TENSORRT_MAJOR}): {reason}")
    import tensorrt as trt

    return trt


# --------------------------------------------------------------------------------------
# CUDA device buffers: cuda-python, pycuda or torch
# --------------------------------------------------------------------------------------

class _CudaApi:
    """Minimal device-memory API: alloc/free, async copies on one stream, sync."""

    library = ""

    def stream_handle(self) -> int:
        raise NotImplementedError

    def alloc(self, nbytes: int) -> Any:
        raise NotImplementedError

    def ptr(self, buf: Any) -> int:
        raise NotImplementedError

    def free(self, buf: Any) -> None:
        raise NotImplementedError

    def htod(self, buf: Any, host: np.ndarray) -> None:
        raise NotImplementedError

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        raise NotImplementedError

    def sync(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _CudaPython(_CudaApi):
    library = "cuda-python"

    def __init__(self, device_id: int):
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
        self.rt = cudart
        self._check(cudart.cudaSetDevice(device_id), "cudaSetDevice")
        self.stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost

    def _check(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, msg = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"{what} failed: {err} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}")
        return rest[0] if len(rest) == 1 else rest

    def stream_handle(self) -> int:
        return int(self.stream)

    def alloc(self, nbytes: int) -> Any:
        return self._check(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc")

    def ptr(self, buf: Any) -> int:
        return int(buf)

    def free(self, buf: Any) -> None:
        self.rt.cudaFree(buf)

    def htod(self, buf: Any, host: np.ndarray) -> None:
        self._check(self.rt.cudaMemcpyAsync(buf, host.ctypes.data, host.nbytes, self._h2d, self.stream),
                    "cudaMemcpyAsync(host→device)")

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, buf, host.nbytes, self._d2h, self.stream),
                    "cudaMemcpyAsync(device→host)")

    def sync(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


class _PyCuda(_CudaApi):
    library = "pycuda"

    def __init__(self, device_id: int):
        import pycuda.driver as drv

        drv.init()
        self.drv = drv
        # The primary context is the one the CUDA runtime (and so TensorRT) uses.
        self.ctx = drv.Device(device_id).retain_primary_context()
        self.ctx.push()
        self.stream = drv.Stream()

    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def alloc(self, nbytes: int) -> Any:
        return self.drv.mem_alloc(max(nbytes, 1))

    def ptr(self, buf: Any) -> int:
        return int(buf)

    def free(self, buf: Any) -> None:
        buf.free()

    def htod(self, buf: Any, host: np.ndarray) -> None:
        self.drv.memcpy_htod_async(buf, host, self.stream)

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        self.drv.memcpy_dtoh_async(host, buf, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        if self.ctx is not None:
            try:
                self.ctx.pop()
            except Exception:
                pass
            self.ctx = None


class _TorchCuda(_CudaApi):
    library = "torch"

    def __init__(self, device_id: int):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch is installed but torch.cuda.is_available() is False")
        self.torch = torch
        self.device = torch.device("cuda", device_id)
        self.stream = torch.cuda.Stream(device=self.device)

    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def alloc(self, nbytes: int) -> Any:
        return self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device=self.device)

    def ptr(self, buf: Any) -> int:
        return int(buf.data_ptr())

    def free(self, buf: Any) -> None:
        pass  # garbage-collected by torch

    def htod(self, buf: Any, host: np.ndarray) -> None:
        src = self.torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            buf[: host.nbytes].copy_(src, non_blocking=False)

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        with self.torch.cuda.stream(self.stream):
            out = buf[: host.nbytes].cpu()
        host.reshape(-1).view(np.uint8)[:] = out.numpy()

    def sync(self) -> None:
        self.stream.synchronize()


_LIBRARIES = {"cuda-python": _CudaPython, "pycuda": _PyCuda, "torch": _TorchCuda}


def cuda_buffer_library(device_id: int = 0, prefer: str = "auto") -> _CudaApi:
    """A device-buffer API from the first library that works (cuda-python,
    pycuda, torch), or the one named by ``prefer``; ``RuntimeError`` listing
    why each failed otherwise."""
    order = list(_LIBRARIES) if prefer == "auto" else [prefer]
    if prefer != "auto" and prefer not in _LIBRARIES:
        raise ValueError(f"cuda library must be 'auto' or one of {sorted(_LIBRARIES)}, not {prefer!r}")
    reasons = []
    for lib in order:
        try:
            return _LIBRARIES[lib](device_id)
        except ImportError as exc:
            reasons.append(f"{lib}: not installed ({exc})")
        except Exception as exc:
            reasons.append(f"{lib}: {exc!r}")
    raise RuntimeError("TensorRT backend needs a library for CUDA device buffers; "
                       + "; ".join(reasons) + " (pip install cuda-python)")


# --------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------

def _np_dtype(trt, dtype) -> np.dtype:
    try:
        return np.dtype(trt.nptype(dtype))
    except Exception:
        table = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64,
                 "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}
        return np.dtype(table[str(dtype).rsplit(".", 1)[-1]])


class TensorRTSession:
    """One TensorRT engine, with the same ``run(dict) -> dict`` as
    :class:`avatarizer.runtime.Session`.

    ``expected`` (a manifest entry's ``description``, or any dict with
    ``name``/``precision``/``schema_version``) is compared with the engine's
    header before deserialization. ``cuda_library`` picks the device-buffer
    library (``"auto"``, ``"cuda-python"``, ``"pycuda"``, ``"torch"``).
    Calls on one session from several threads take turns (a lock): for
    parallel inference make one session per thread.
    """

    def __init__(self, path: str | os.PathLike, *, name: str | None = None, device_id: int = 0,
                 expected: Mapping[str, Any] | None = None, cuda_library: str = "auto",
                 sha256: str | None = None):
        self.path = Path(path)
        if sha256 is not None:  # exactly the bytes the manifest verified
            data = read_verified_bytes(self.path, sha256)
        else:
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                raise ModelError(f"{self.path}: cannot read engine file: {exc}") from None
        try:
            self.description, offset = read_engine_header(data)
        except ValueError as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        for key, want in (expected or {}).items():
            if key in ("name", "precision", "schema_version", "format") and self.description.get(key) != want:
                raise ModelError(f"{self.path}: engine header says {key} {self.description.get(key)!r}, "
                                 f"expected {want!r}")
        self.name = name or self.description.get("name") or self.path.stem
        trt = require_tensorrt()
        self._trt = trt
        self._cuda = cuda_buffer_library(device_id, cuda_library)
        self.cuda_library = self._cuda.library
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(memoryview(data)[offset:])
        if self._engine is None:
            built = self.description.get("tensorrt", {})
            raise ModelError(f"{self.path}: TensorRT {trt.__version__} could not deserialize the engine "
                             f"(built with TensorRT {built.get('version', '?')} on "
                             f"{built.get('device', '?')}; engines only load on the same GPU model "
                             "and TensorRT version: rebuild it with avatarizer-export tensorrt)")
        self._context = self._engine.create_execution_context()
        self.inputs: list[_TensorInfo] = []
        self.outputs: list[_TensorInfo] = []
        self._profile: dict[str, tuple] = {}
        for i in range(self._engine.num_io_tensors):
            tname = self._engine.get_tensor_name(i)
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(tname))
            dims = tuple(d if d >= 0 else "batch" if j == 0 else "?" for j, d in enumerate(shape))
            info = _TensorInfo(tname, dims, _np_dtype(trt, self._engine.get_tensor_dtype(tname)),
                               str(self._engine.get_tensor_dtype(tname)))
            if self._engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT:
                self.inputs.append(info)
                if any(d < 0 for d in shape):
                    lo, _, hi = self._engine.get_tensor_profile_shape(tname, 0)
                    self._profile[tname] = (tuple(lo), tuple(hi))
            else:
                self.outputs.append(info)
        self.input_names = [t.name for t in self.inputs]
        self.output_names = [t.name for t in self.outputs]
        self.providers = [f"TensorRT {trt.__version__} ({self.cuda_library} buffers)"]
        self._buffers: dict[str, tuple[Any, int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_entry(cls, entry, **options: Any) -> "TensorRTSession":
        """A session on exactly the bytes the manifest verified (see
        :meth:`avatarizer.runtime.Session.from_entry`): the header must match
        the entry's description, and the engine's inputs and outputs (and the
        description's) the ones the manifest lists (:class:`ModelError` otherwise)."""
        sess = cls(entry.path, name=entry.name, expected=entry.description, sha256=entry.sha256, **options)
        check_io(entry, sess.inputs, sess.outputs)
        check_description_io(entry)
        return sess

    @property
    def precision(self) -> str | None:
        return self.description.get("precision")

    def _buffer(self, tname: str, nbytes: int) -> int:
        buf = self._buffers.get(tname)
        if buf is None or buf[1] < nbytes:
            if buf is not None:
                self._cuda.free(buf[0])
            buf = (self._cuda.alloc(nbytes), nbytes)
            self._buffers[tname] = buf
        return self._cuda.ptr(buf[0])

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Runs the engine; inputs and outputs as in :meth:`avatarizer.runtime.Session.run`."""
        feed = check_feed(self.name, self.inputs, inputs)
        for tname, (lo, hi) in self._profile.items():
            shape = feed[tname].shape
            if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
                raise ValueError(f"model {self.name!r} input {tname!r}: shape {shape} is outside the "
                                 f"engine's optimization profile {lo}..{hi} (rebuild with a larger "
                                 "max_batch, or split the batch)")
        with self._lock:
            ctx = self._context
            for tname, arr in feed.items():
                if not ctx.set_input_shape(tname, arr.shape):
                    raise ValueError(f"model {self.name!r}: TensorRT refused shape {arr.shape} for {tname!r}")
                ptr = self._buffer(tname, arr.nbytes)
                ctx.set_tensor_address(tname, ptr)
                self._cuda.htod(self._buffers[tname][0], arr)
            results = {}
            for out in self.outputs:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(out.name))
                host = np.empty(shape, out.dtype)
                ctx.set_tensor_address(out.name, self._buffer(out.name, host.nbytes))
                results[out.name] = host
            if not ctx.execute_async_v3(self._cuda.stream_handle()):
                raise RuntimeError(f"model {self.name!r}: TensorRT execute_async_v3 failed")
            for out_name, host in results.items():
                self._cuda.dtoh(host, self._buffers[out_name][0])
            self._cuda.sync()
        return results

    __call__ = run

    def close(self) -> None:
        """Frees the device buffers and the stream (also done at garbage collection)."""
        cuda = getattr(self, "_cuda", None)
        if cuda is None:
            return
        for buf, _ in getattr(self, "_buffers", {}).values():
            try:
                cuda.free(buf)
            except Exception:
                pass
        self._buffers = {}
        self._context = None
        self._engine = None
        cuda.close()
        self._cuda = None

    def __del__(self):  # pragma: no cover - depends on GC timing
        try:
            self.close()
        except Exception:
            pass

    def __copy__(self):
        # a copy shared the device buffers: collected, it freed them under the original (a review, session 73)
        raise TypeError("A TensorRTSession cannot be copied; open another on the same engine file.")

    def __deepcopy__(self, memo):
        self.__copy__()

    def __reduce__(self):
        self.__copy__()

    def __enter__(self) -> "TensorRTSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorRTSession({self.name!r}, precision={self.precision!r}, providers={self.providers})"
