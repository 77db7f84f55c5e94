"""Regenerate the Python code of `proto/` into `tally/v1/`.

The generated modules are committed so that installing Tally needs no protoc;
`tests/tally/test_protogen.py` regenerates into a temporary folder and fails if
anything differs, so the committed code can never drift from the contract.
Run: `python -m tally.protogen` (needs the `test` extra for grpcio-tools).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) into out_dir; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_DIR)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    written = sorted(p for p in (out_dir / "tally").rglob("*_pb2*") if p.is_file())
    return [*written, _openapi(out_dir, include, files)]


def _openapi(out_dir: Path, include: Path, files: list[str]) -> Path:
    """tally/v1/openapi.json from a descriptor set with the contract's comments (see tally.api.openapi)."""
    import json
    import tempfile

    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    from tally.api.openapi import build
    from tally.api.service import scopes

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", "--include_source_info", f"--descriptor_set_out={out}"]
        if protoc.main([*args, *files]) != 0:
            raise RuntimeError("protoc failed writing the descriptor set")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    document = build(fds, {**scopes(), "IngestBatch": "ingest"}, "v1")
    target = out_dir / "tally" / "v1" / "openapi.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return target


def main() -> int:
    written = generate(ROOT)
    for path in written:
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
