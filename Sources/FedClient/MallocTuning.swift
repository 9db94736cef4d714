#if canImport(Glibc)
    /// glibc's `int mallopt(int param, int value)` (malloc.h, which the Glibc module does not export).
    @_silgen_name("mallopt")
    private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// glibc's allocator tuned for a process that moves whole models around.
///
/// By default glibc maps each allocation above its (adaptive) threshold
/// separately and returns freed memory to the system at once, so every
/// model-sized buffer (a frame, a decoded model, an encoded push) is mapped,
/// faulted in page by page and zeroed again. With work moving between
/// threads, as in an async client, that was most of a round trip's CPU here
/// (`fed bench wire --async-vs-blocking`: 3.0 ms per raw round trip against
/// 1.0 ms with this tuning; the blocking client 1.2 ms against 1.0 ms).
/// `enable()` keeps buffers up to 64 MiB in the heap and returns freed memory
/// to the system once 256 MiB are free: faster, at the price of memory that
/// stays with the process after a peak. `fed`'s client-side commands call
/// it; a program embedding the client may too. A no-op off glibc.
public enum MallocTuning {
    public static func enable() {
        #if canImport(Glibc)
            // malloc.h: M_TRIM_THRESHOLD is -1, M_MMAP_THRESHOLD is -3.
            _ = glibcMallopt(-3, 64 << 20)
            _ = glibcMallopt(-1, 256 << 20)
        #endif
    }
}
