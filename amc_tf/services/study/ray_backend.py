"""The Ray backend: the study's tasks on a Ray cluster (`--ray-address` or RAY_ADDRESS).

Every task is a Ray task with retries (`max_retries`): when a worker or a whole node dies,
Ray runs the task again elsewhere; a task that fails by itself (bad input) returns its error
and is not retried. A phone is a custom resource `adb:SERIAL` that the node it is plugged
into advertises (`ray start ... --resources '{"adb:SERIAL": 1}'`); a latency task for it
needs that resource, so two measurements never share a phone. Ray workers are reused, so
each imports TensorFlow once and serves many tasks.
"""

from __future__ import annotations

import contextlib
import os
import socket

from amc_tf.core.errors import AmcError

MAX_RETRIES = 3
CONNECT_TIMEOUT_S = 5.0


class RayUnreachable(AmcError):
    """--ray-address cannot be reached (exit 2)."""


def _host_port(address: str) -> tuple[str, int]:
    addr = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayUnreachable(f"--ray-address {address!r}: expected HOST:PORT (the head's GCS port, 6379 by default)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One TCP connection to the head first: an unreachable cluster is one line, in seconds."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise RayUnreachable(f"--ray-address {address}: cannot reach the Ray head ({why})") from None


@contextlib.contextmanager
def _stderr_captured():
    """File descriptor 2 into a temp file for the block; yields a list that holds its text afterwards."""
    import sys
    import tempfile

    said: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            said.append(tmp.read().decode(errors="replace"))


_initialised = False


def _remote_task(task: dict, blob):
    global _initialised
    import ray

    from amc_tf.services.study import work

    if not _initialised:
        work.init_worker()
        _initialised = True
    os.environ["AMC_TF_STUDY_NODE"] = ray.get_runtime_context().get_node_id()[:12]
    return work.run_task(task, blob)


class RayPool:
    name = "ray"
    exclusive_resources = True  # a task needing adb:SERIAL waits for that phone

    def __init__(self, address: str):
        check_reachable(address)
        import ray

        with _stderr_captured() as said:  # Ray's C++ start-up warnings are not the study's output
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=True)
            except Exception as exc:  # noqa: BLE001 - a refused connection, bad auth token, version mismatch
                failure = " ".join(str(exc).split())[:300]
            else:
                failure = None
        if failure is not None:
            raise RayUnreachable(f"--ray-address {address}: {failure}"
                                 + (f" ({' '.join(said[0].split())[-300:]})" if said and said[0].strip() else ""))
        self._ray = ray
        self._fn = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_remote_task)
        self._blobs: dict[int, object] = {}
        self.address = address

    def check_resources(self, needed: list[str]) -> None:
        """Refuse a resource (a phone, `adb:SERIAL`) no node advertises: its tasks would wait forever."""
        have = self._ray.cluster_resources()
        missing = [r for r in needed if have.get(r, 0) < 1]
        if missing:
            raise AmcError(f"no node of the Ray cluster at {self.address} advertises {', '.join(missing)}: start the "
                           f"node the phone is plugged into with ray start ... --resources "
                           f"'{{\"{missing[0]}\": 1}}'")

    def describe(self) -> str:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)
        return f"Ray cluster at {self.address} ({len(nodes)} node(s), {cpus:g} CPUs)"

    def _blob(self, blob):
        if blob is None:
            return None
        ref = self._blobs.get(id(blob))
        if ref is None or ref[0] is not blob:
            ref = (blob, self._ray.put(blob))
            self._blobs[id(blob)] = ref
        return ref[1]

    def submit(self, task: dict, blob: bytes | None, resources: dict | None = None):
        opts = {"num_cpus": 1}
        if resources:
            opts["resources"] = resources
        return self._fn.options(**opts).remote(task, self._blob(blob))

    def wait(self, handles, timeout: float | None):
        done, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout)
        return done

    def get(self, handle) -> dict:
        try:
            return self._ray.get(handle)
        except Exception as exc:  # noqa: BLE001 - retries exhausted (worker or node lost every time)
            return {"status": "error", "error": f"Ray task lost after {MAX_RETRIES} retries: "
                    f"{' '.join(str(exc).split())[:300]}", "node": None, "seconds": None}

    def close(self) -> None:
        try:
            self._ray.shutdown()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
