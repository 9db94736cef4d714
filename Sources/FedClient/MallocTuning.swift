#if canImport(Glibc)
    /// glibc's `int mallopt(int param, int value)` (malloc.h, which the Glibc module does not export).
    @_silgen_name("mallopt")
    private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// An opt-in tuning of glibc's allocator for a process that moves whole models
/// around. No library of this package calls it: a program decides, once, for its
/// whole process (`fed client` and `fed bench wire` do).
///
/// By default glibc serves each allocation above its (adaptive) mmap
/// threshold with a mapping of its own and returns freed memory to the
/// system at once, so every model-sized buffer (a frame, a decoded model, an
/// encoded push) is mapped, faulted in page by page and zeroed again; with
/// work moving between threads that can be most of a round trip's CPU
/// (`fed bench wire` measures it). `enable()` sets `M_MMAP_THRESHOLD` to
/// 64 MiB (buffers up to that size come from the heap) and `M_TRIM_THRESHOLD`
/// to 256 MiB (freed memory goes back to the system once that much is free
/// at the top of the heap).
///
/// Call it at the start of a program that sends or receives models often
/// (a client process, a load generator), before its threads allocate: the
/// settings are process-wide and apply to allocations made after the call.
/// The price is memory: after a peak, up to 256 MiB freed may stay with the
/// process, and heap fragmentation can keep more. Do not call it in an app
/// whose memory matters more than a client's CPU time, or that tunes its
/// allocator itself. A no-op off glibc (macOS, musl).
public enum MallocTuning {
    /// Applies the tuning to the whole process (glibc only; idempotent).
    public static func enable() {
        #if canImport(Glibc)
            // malloc.h: M_TRIM_THRESHOLD is -1, M_MMAP_THRESHOLD is -3.
            _ = glibcMallopt(-3, 64 << 20)
            _ = glibcMallopt(-1, 256 << 20)
        #endif
    }
}
