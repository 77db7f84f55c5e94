"""The committed generated code is exactly what the .proto contracts generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tally.protogen import ROOT, generate


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "protoc wrote nothing"
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = ROOT / rel
        assert committed.exists(), f"{rel} is generated but not committed: run python -m tally.protogen"
        assert committed.read_text() == path.read_text(), f"{rel} is stale: run python -m tally.protogen"


def test_every_service_method_message_and_field_is_commented(tmp_path: Path) -> None:
    """The contract documents itself: integrators read the .proto, so nothing in it goes unexplained."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    from tally.protogen import PROTO_DIR, proto_files

    out = tmp_path / "set.pb"
    include = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_DIR)) for p in proto_files()]
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", "--include_source_info", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *files]) == 0
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    missing: list[str] = []
    for f in fds.file:
        commented = {tuple(loc.path) for loc in f.source_code_info.location if loc.leading_comments.strip()}

        def need(path: tuple[int, ...], name: str, fname: str = f.name, have: set[Any] = commented) -> None:
            if path not in have:
                missing.append(f"{fname}: {name}")

        for m_i, msg in enumerate(f.message_type):  # 4 = message_type, 2 = field
            need((4, m_i), msg.name)
            for f_i, field in enumerate(msg.field):
                need((4, m_i, 2, f_i), f"{msg.name}.{field.name}")
        for s_i, svc in enumerate(f.service):  # 6 = service, 2 = method
            need((6, s_i), svc.name)
            for r_i, method in enumerate(svc.method):
                need((6, s_i, 2, r_i), f"{svc.name}.{method.name}")
    assert files and not missing, f"uncommented in the .proto files: {missing}"
