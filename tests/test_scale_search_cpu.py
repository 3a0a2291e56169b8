"""The scale benchmark's interleaved search-CPU measurement (benchmarks/scale/search_cpu.py), on a fake index."""

from benchmarks.scale.search_cpu import interleaved


class Recorder:
    def __init__(self, size: int, log: list):
        self.size, self.log = size, log

    def search(self, query: str, limit: int, seeds: list) -> None:
        self.log.append((self.size, query))


def test_sizes_take_turns_in_blocks_and_each_blocks_first_searches_are_not_timed():
    log: list = []
    loaded = {
        10: (Recorder(10, log), [("a", []), ("b", []), ("c", [])]),
        1000: (Recorder(1000, log), [("x", [])]),
    }
    times = interleaved(loaded, rounds=3, block=4, warmup=1)
    assert [size for size, _ in log] == ([10] * 4 + [1000] * 4) * 3  # blocks in turn, never search by search
    assert {size: len(t) for size, t in times.items()} == {10: 9, 1000: 9}  # 3 rounds x (4 - 1 warm-up)
    assert [q for size, q in log if size == 10][:8] == ["a", "b", "c", "a", "b", "c", "a", "b"]  # the cycle goes on
    assert all(t == sorted(t) for t in times.values())
