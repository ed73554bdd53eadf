"""How KubeSink chooses a renewal's encoding, and falls back to JSON (pure: a stand-in client
records the requests; test_plane.py and test_leaseproto_plane.py send them to an API server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from maxtune.agent import leaseproto
from maxtune.agent.kube import KubeSink
from maxtune.agent.lease import new_lease
from maxtune.kube import KubeError

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


class Recorder:
    """Answers like an API server for one Lease; `protobuf` says what it does with protobuf."""

    host = "https://recorder"

    def __init__(self, protobuf: str = "ok") -> None:
        self.protobuf = protobuf
        self.calls: list[tuple[str, str]] = []
        self.version = 1
        self.created = False

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        metadata = {**body["metadata"], "resourceVersion": str(self.version)}
        metadata.pop("managedFields", None)
        return {**body, "metadata": metadata}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append(("json", method))
        if method == "GET" and path.startswith("/api/v1/nodes/"):
            return {"metadata": {"uid": "node-uid"}}
        if method in ("POST", "PUT"):
            self.created = True
            return self._stored(kwargs["body"])
        if not self.created:
            raise KubeError(404, "NotFound", 'leases "gpu-1" not found')
        return self._stored(new_lease("maxtune", "gpu-1", None, 180, NOW))

    def request_protobuf(self, method: str, path: str, *, body: bytes) -> bytes:
        self.calls.append(("protobuf", method))
        if self.protobuf == "unsupported":
            raise KubeError(
                415, "UnsupportedMediaType", "the body of the request was in an unknown format"
            )
        if self.protobuf == "garbled":
            return b"k8s\x00\x0a\x02\x0a"
        return leaseproto.encode(self._stored(leaseproto.decode(body)))


def _rounds(kube: Recorder, rounds: int) -> KubeSink:
    sink = KubeSink(kube, lease_namespace="maxtune")  # type: ignore[arg-type]
    for _ in range(rounds):
        sink._renew("gpu-1", "maxtune")
    return sink


def test_renewals_go_in_protobuf_after_a_json_create() -> None:
    kube = Recorder()
    sink = _rounds(kube, 3)
    assert kube.calls[-2:] == [("protobuf", "PUT"), ("protobuf", "PUT")]
    assert sink.renewals == {"protobuf": 2}
    assert sink.lease_protobuf


def test_an_api_server_refusing_protobuf_turns_the_agent_to_json_in_the_same_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = Recorder(protobuf="unsupported")
    sink = _rounds(kube, 3)
    # Round 1 created it; round 2: one refused protobuf PUT followed at once by JSON;
    # round 3: JSON only.
    puts = [c for c in kube.calls if c[1] == "PUT"]
    assert puts == [("protobuf", "PUT"), ("json", "PUT"), ("json", "PUT")]
    assert sink.renewals == {"json": 2}
    assert not sink.lease_protobuf
    assert "Lease renewals go as JSON from now on" in caplog.text
    assert "415" in caplog.text


def test_an_answer_the_codec_cannot_read_is_read_again_as_json_and_json_kept() -> None:
    kube = Recorder(protobuf="garbled")
    sink = _rounds(kube, 3)
    puts_and_gets = [c for c in kube.calls if c[1] in ("PUT", "GET")]
    # Round 2: the protobuf PUT was written, its answer unreadable; round 3 reads the Lease
    # (JSON) and renews it as JSON.
    assert puts_and_gets[-3:] == [("protobuf", "PUT"), ("json", "GET"), ("json", "PUT")]
    assert sink.renewals == {"protobuf": 1, "json": 1}
    assert not sink.lease_protobuf


def test_a_lease_holding_what_the_codec_does_not_carry_goes_as_json_that_round() -> None:
    kube = Recorder()
    sink = _rounds(kube, 1)
    assert sink._lease is not None
    sink._lease["metadata"]["futureField"] = {"x": 1}  # what a newer API server might add
    sink._renew("gpu-1", "maxtune")
    assert kube.calls[-1] == ("json", "PUT")
    assert sink.renewals == {"json": 1}
    assert sink.lease_protobuf  # the next Lease without it goes as protobuf again
