from cri.commands.table import format_table, human_bytes, human_duration, human_size


def test_space_padded_columns_like_tabwriter() -> None:
    text = format_table(["KEY\tPARENT\tKIND\t", "sha256:ab\t\tCommitted\t", "c\tsha256:ab\tActive\t"], 1, 8, 1)
    assert text.splitlines() == [
        "KEY       PARENT    KIND      ",
        "sha256:ab           Committed ",
        "c         sha256:ab Active    ",
    ]


def test_tab_padded_columns_round_to_tab_stops() -> None:
    text = format_table(["DIGEST\tSIZE\tAGE\tLABELS", "sha256:0123456789\t895B\t2 minutes\t-"], 1, 8, 1, "\t")
    assert text.splitlines() == ["DIGEST\t\t\tSIZE\tAGE\t\tLABELS", "sha256:0123456789\t895B\t2 minutes\t-"]


def test_human_units_match_go() -> None:
    assert [human_size(s) for s in (895, 1570, 7639, 31370000, 25340000, 1394)] == [
        "895B", "1.57kB", "7.639kB", "31.37MB", "25.34MB", "1.394kB"]
    assert [human_bytes(s) for s in (0, 1023, 2 * 1024 * 1024 + 700 * 1024)] == ["0.0 B", "1023.0 B", "2.7 MiB"]
    assert [human_duration(s) for s in (0.2, 1, 59, 61, 37 * 60, 3600, 50 * 3600)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "37 minutes", "About an hour", "2 days"]
