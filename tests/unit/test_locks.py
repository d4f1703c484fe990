import threading
import time

from store.locks import KeyedLocks


def test_same_key_waits_other_keys_do_not_and_nothing_is_kept() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    def second() -> None:
        with locks.hold("a"):
            order.append("second a")

    with locks.hold("a"):
        with locks.hold("b"):
            order.append("b while a is held")
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.05)
        order.append("first a")
    thread.join()
    assert order == ["b while a is held", "first a", "second a"]
    assert len(locks) == 0
