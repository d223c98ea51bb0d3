"""A torch module run by ONNX Runtime, its exported graph cached on disk by weights and input shape.

Used for conjure's small CPU models (pipelines/onnx_unet.py: the U-Net and the VAE decoder; text/encoder.py:
MiniLM). Exported once with torch's exporter, written atomically under `cache/onnx` in conjure's data folder,
so later processes only open the file; with the graph cached, a process need not build the torch module at
all, nor import the library that defines it.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from pathlib import Path

import torch


def cache_dir(home: Path) -> Path:
    """Where exported graphs live under a conjure data folder."""
    return Path(home) / "cache" / "onnx"


def available() -> bool:
    """Whether the exporter (`onnx`) and the runtime (`onnxruntime`) both import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxGraph:
    """A torch module's forward as ONNX Runtime sessions, one per input shape with a dynamic batch axis.

    `module` is the module, or a function that builds it (called only if a graph must be exported);
    `model_hash` names the weights (None or "unsaved": in memory only, never cached); `cache_dir` holds
    the exported graphs; `threads` is ORT's intra-op thread count (default: torch's)."""

    kind = "graph"                   # the file name's prefix
    inputs: tuple[str, ...] = ()
    batched: tuple[str, ...] = ()    # inputs (and the output "y") whose axis 0 is the batch

    def __init__(self, module, model_hash: str | None, cache_dir: Path | None, threads: int | None = None):
        self.module = module
        self.model_hash = model_hash
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.threads = threads or torch.get_num_threads()
        self._sessions: dict[tuple, object] = {}
        self._sizes: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def nbytes(self) -> int:
        """Size of the open sessions' graphs (their weights, which each session holds in memory)."""
        return sum(self._sizes.values())

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module as a function of `inputs` (positional) returning one tensor, for export."""
        raise NotImplementedError

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Axes left free in the exported graph: axis 0 ("batch") of `batched` and of the output "y"."""
        return {name: {0: "batch"} for name in (*self.batched, "y")}

    def graph_path(self, key: tuple) -> Path | None:
        if self.cache_dir is None or not self.model_hash or self.model_hash == "unsaved":
            return None
        import onnxruntime
        shape = "x".join(str(k) for k in key)
        return self.cache_dir / f"{self.kind}-{self.model_hash}-{shape}-torch{torch.__version__}-ort{onnxruntime.__version__}.onnx"

    def _export(self, example: tuple[torch.Tensor, ...]) -> bytes:
        module = self.module if isinstance(self.module, torch.nn.Module) else self.module()
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")        # TracerWarnings about shape checks baked into the graph
            torch.onnx.export(self.wrap(module).eval(), example, buf, input_names=list(self.inputs),
                              output_names=["y"], opset_version=17, dynamo=False,
                              dynamic_axes=self.dynamic_axes())
        return buf.getvalue()

    def _session(self, key: tuple, example: tuple[torch.Tensor, ...]) -> tuple[object, int]:
        """An ORT session for shape `key` (from the cache, or exported from `example`) and its graph's size."""
        import onnxruntime as ort
        path = self.graph_path(key)
        if path is not None and path.is_file():
            model = path.read_bytes()
        else:
            model = self._export(example)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
                with os.fdopen(fd, "wb") as f:
                    f.write(model)
                os.replace(tmp, path)          # atomic: a reader sees the whole graph or none
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3            # warnings about hardware-specific rewrites are noise here
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]), len(model)

    def run(self, key: tuple, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Run the graph for shape `key` on fp32 CPU `tensors` (in `inputs` order); exports it if needed."""
        sess = self._sessions.get(key)
        if sess is None:
            with self._lock:
                sess = self._sessions.get(key)
                if sess is None:
                    sess, self._sizes[key] = self._session(key, tensors)
                    self._sessions[key] = sess
        y = sess.run(None, {name: v.numpy() for name, v in zip(self.inputs, tensors)})[0]
        return torch.from_numpy(y)
