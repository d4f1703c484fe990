from runtime.netstats import InterfaceStats, parse_net_dev
from runtime.stats import CpuRates

# /proc/net/dev, its columns narrowed: two header lines, then one row per interface.
NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls ...\n"
    "    lo: 120 2 0 0 0 0 0 0 120 2 0 0 0 0 0 0\n"
    "  eth0: 1578537 76 3 0 0 0 0 0 4874 70 1 0 0 0 0 0\n"
)


def test_net_dev_rows() -> None:
    assert parse_net_dev(NET_DEV) == [InterfaceStats("lo", 120, 0, 120, 0), InterfaceStats("eth0", 1578537, 3, 4874, 1)]


def test_cpu_rate_between_samples() -> None:
    rates = CpuRates()
    assert rates.rate("a", 1_000, 10_000_000_000) == 0  # nothing before it
    # Half a second of CPU in one second: half a core.
    assert rates.rate("a", 500_001_000, 11_000_000_000) == 500_000_000
    assert rates.rate("b", 7, 11_000_000_000) == 0  # each key on its own
    # A sample no newer than the last, or a counter that went back (a new cgroup), gives no rate.
    assert rates.rate("a", 600_000_000, 11_000_000_000) == 0
    assert rates.rate("a", 5, 12_000_000_000) == 0
    assert rates.rate("a", 1_000_000_005, 13_000_000_000) == 1_000_000_000


def test_cpu_rates_forget_old_keys() -> None:
    rates = CpuRates(forget_after=1.0)
    rates.rate("gone", 0, 1_000_000_000)
    rates.rate("other", 0, 5_000_000_000)  # long after: "gone" is swept
    assert rates.rate("gone", 1_000_000_000, 6_000_000_000) == 0
