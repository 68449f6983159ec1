"""An emulated Android device for adb's TCP transport (`amc-tf device emulate`).

It lets the real adb client and server (`adb connect 127.0.0.1:PORT`) drive the adb
target without a phone: shell (legacy and v2), sync (push/pull) and getprop, with the
commands run on this host inside a directory that plays the device's /data and /sdcard.
It measures the host, not a phone. See docs/adb.md.
"""
