"""Which adb device to use: the serials `adb devices` lists, their states, and one line
saying what is wrong (unauthorized, offline, no permissions, not connected, several
devices and no --serial)."""

from __future__ import annotations

import re

from amc_tf.core.errors import DeviceError


def state_problem(serial: str, state: str) -> str | None:
    if state == "device":
        return None
    if state == "unauthorized":
        return (f"device {serial} is unauthorized: unlock it and accept the 'Allow USB debugging' prompt "
                "(or revoke USB debugging authorisations and reconnect)")
    if state == "offline":
        return f"device {serial} is offline: reconnect it (or run `adb reconnect`)"
    if state == "no permissions":
        return f"device {serial}: no permissions (add a udev rule for it, or run the adb server with more rights)"
    return f"device {serial} is in state {state!r}, not 'device'"


def select_serials(adb, serials: list[str]) -> list[str]:
    """The serials to use (adb: an android.Adb); raises DeviceError saying exactly what is wrong."""
    listed = adb.devices()
    if not serials:
        if not listed:
            raise DeviceError("no Android device found (`adb devices` lists none): connect one and enable USB debugging")
        if len(listed) > 1:
            desc = ", ".join(f"{s} ({st})" for s, st in sorted(listed.items()))
            raise DeviceError(f"several devices connected ({desc}): choose with --serial{_twice_hint(listed)}")
        serials = list(listed)
    seen = set()
    for s in serials:
        if s in seen:
            raise DeviceError(f"--serial {s} given twice")
        seen.add(s)
        if s not in listed:
            have = ", ".join(sorted(listed)) or "none"
            hint = (f"; for a network device run `adb connect {s}` first"
                    if re.match(r"^[\w.-]+:\d+$", s) else "")
            raise DeviceError(f"device {s} not found (connected: {have}){hint}")
        problem = state_problem(s, listed[s])
        if problem:
            raise DeviceError(problem)
    return serials


def _twice_hint(listed: dict[str, str]) -> str:
    """A device on 127.0.0.1:N (N odd, 5555-5585) is also `emulator-<N-1>`: the adb server's
    own scan for local emulators finds it. Say so, as the two serials are one device."""
    for s in listed:
        m = re.fullmatch(r"(?:127\.0\.0\.1|localhost):(\d+)", s)
        if m and f"emulator-{int(m.group(1)) - 1}" in listed:
            return (f" ({s} and emulator-{int(m.group(1)) - 1} are probably one device, seen twice because the adb "
                    f"server scans ports 5554-5585 for emulators; `amc-tf device emulate` listens on 15555 by default)")
    return ""


def serial_tag(serial: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", serial)
