"""kiss-lab-clock: keeps a lab node's clock on the host's, as NTP keeps a real node's.

kissclusterd drops a heartbeat whose timestamp is more than the dead time away from its own
clock, so the two nodes' clocks must agree. A real site runs NTP. A lab node has no NTP
server to reach, and under emulation its clock can drift from the host's; nor does it see
the host's clock being stepped, while a node booted afterwards starts from the new time. The
qemu RTC follows the host's clock (`-rtc clock=host`, qemu's default), so at each RTC second
tick this compares and steps the system clock towards it, at most MAX_STEP at a time: less
than kissclusterd's interval, so it never sees a clock jump and exits. The RTC ticks less than
a second behind the host's clock (qemu sets it from the host's in whole seconds), so the nodes
agree to within a second: a third of the lab's dead time.

Installed into the lab image as /usr/local/sbin/kiss-lab-clock and run by the Debian
python3 of the guest: the standard library only.
"""

import calendar
import fcntl
import os
import struct
import time

RTC_DEVICE = "/dev/rtc0"
RTC_UIE_ON = 0x7003  # <linux/rtc.h>: update-ended interrupt on, off; read the time
RTC_UIE_OFF = 0x7004
RTC_RD_TIME = 0x80247009
TOLERANCE = 0.1  # seconds; the RTC tick's wake-up latency stays below it
MAX_STEP = 0.5
PERIOD = 2.0


def step_towards(offset: float) -> float:
    """The step to take for the RTC being `offset` seconds ahead of the system clock."""
    if abs(offset) <= TOLERANCE:
        return 0.0
    return max(-MAX_STEP, min(MAX_STEP, offset))


def rtc_offset(rtc: int) -> float:
    """Seconds the RTC is ahead of the system clock, read at the start of an RTC second."""
    fcntl.ioctl(rtc, RTC_UIE_ON)
    try:
        os.read(rtc, 8)  # blocks until the RTC's next second begins
        now = time.time()
        fields = struct.unpack("9i", fcntl.ioctl(rtc, RTC_RD_TIME, bytes(36)))
    finally:
        fcntl.ioctl(rtc, RTC_UIE_OFF)
    second, minute, hour, day, month, year = fields[:6]
    return calendar.timegm((year + 1900, month + 1, day, hour, minute, second)) - now


def main() -> None:
    rtc = os.open(RTC_DEVICE, os.O_RDONLY)  # only one opener at a time: this one
    while True:
        offset = rtc_offset(rtc)
        step = step_towards(offset)
        if step:
            time.clock_settime(time.CLOCK_REALTIME, time.time() + step)
            print(f"the RTC is {offset:+.3f} s from our clock: stepped {step:+.3f} s", flush=True)
        time.sleep(PERIOD)


if __name__ == "__main__":
    main()
