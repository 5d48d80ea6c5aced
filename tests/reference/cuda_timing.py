"""Median CUDA-event time of a torch callable, for the benchmark scripts here."""


def median_ms(fn, reps=10, warm=3, inner=1):
    """Median over `reps` timings of `inner` back-to-back calls (per call, ms), after `warm` untimed calls."""
    import torch
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / inner)
    times.sort()
    return times[len(times) // 2]
