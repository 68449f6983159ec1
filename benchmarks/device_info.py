"""What amc-tf records about an Android device before and after each run: one shell
script printing `key=value` lines (every read may fail harmlessly), and its parser."""

from __future__ import annotations

import re

# What the device exposes, one `key=value` a line; every read may fail harmlessly.
INFO_SCRIPT = r"""
echo "model=$(getprop ro.product.model)"
echo "android=$(getprop ro.build.version.release)"
echo "sdk=$(getprop ro.build.version.sdk)"
for c in /sys/devices/system/cpu/cpu[0-9]*; do n=${c##*/}; echo "$n.governor=$(cat $c/cpufreq/scaling_governor 2>/dev/null)"; echo "$n.cur_khz=$(cat $c/cpufreq/scaling_cur_freq 2>/dev/null)"; done
echo "battery.temp=$(cat /sys/class/power_supply/battery/temp 2>/dev/null)"
for z in /sys/class/thermal/thermal_zone*; do echo "thermal.$(cat $z/type 2>/dev/null)=$(cat $z/temp 2>/dev/null)"; done
""".strip()


def parse_info(text: str) -> dict:
    info: dict = {"cpus": {}, "thermal_c": {}}
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, val = line.split("=", 1)
        key, val = key.strip(), val.strip()
        if not val:
            continue
        if key in ("model", "android", "sdk"):
            info[key] = val
        elif re.match(r"^cpu\d+\.(governor|cur_khz)$", key):
            cpu, what = key.split(".")
            info["cpus"].setdefault(cpu, {})[what] = int(val) if what == "cur_khz" and val.isdigit() else val
        elif key == "battery.temp" and re.match(r"^-?\d+$", val):
            info["battery_temp_c"] = int(val) / 10.0  # tenths of a degree
        elif key.startswith("thermal.") and re.match(r"^-?\d+$", val):
            v = int(val)
            info["thermal_c"][key[len("thermal."):]] = v / 1000.0 if abs(v) >= 1000 else float(v)
    return info


def check_device_taskset(client, serials: list[str], mask: str | None) -> None:
    """Before any run: refuse a --taskset mask that selects none of a device's CPUs
    (/sys/devices/system/cpu/present; cores a phone has switched off still count). A device
    that does not say is not refused."""
    from amc_tf.benchmarks.protocol import check_taskset, cpu_list

    for serial in serials if mask else []:
        rc, out, _ = client.shell(serial, "cat /sys/devices/system/cpu/present 2>/dev/null", timeout=30)
        check_taskset(mask, cpu_list(out) if rc == 0 else [], f"device {serial} has")
