import Dispatch
import Synchronization
import Testing

@testable import FedModel

@Suite("WorkerPool")
struct WorkerPoolTests {
    @Test("Every part runs exactly once, and run returns only after all of them", arguments: [0, 1, 3])
    func everyPartOnce(helpers: Int) {
        let pool = WorkerPool(helpers: helpers)
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 8)
        defer { counts.deallocate() }
        nonisolated(unsafe) let shared = counts
        for round in 0..<3_000 {
            let parts = round % 8 + 1
            shared.initialize(repeating: 0)
            pool.run(parts: parts) { part in
                // A little work, so parts overlap between threads.
                var x = 0
                for i in 0..<(part * 50) { x &+= i }
                shared[part] += 1 + (x == -1 ? 1 : 0)
            }
            #expect(Array(shared[0..<parts]) == Array(repeating: 1, count: parts), "round \(round)")
            #expect(shared[parts...].allSatisfy { $0 == 0 })
        }
    }

    @Test("Callers on many threads at once (the pool busy): each gets its own result, none waits forever")
    func concurrentCallers() {
        let pool = WorkerPool(helpers: 2)
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 6) { caller in
            for round in 0..<500 {
                let parts = 2 + (caller + round) % 5
                let sums = UnsafeMutableBufferPointer<Int>.allocate(capacity: parts)
                sums.initialize(repeating: 0)
                nonisolated(unsafe) let out = sums
                pool.run(parts: parts) { part in out[part] = caller * 1000 + part }
                if Array(sums) != (0..<parts).map({ caller * 1000 + $0 }) { failures.add(1, ordering: .relaxed) }
                sums.deallocate()
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
    }

    @Test("More helpers than cores (oversubscribed): every product is right, every time")
    func oversubscribed() {
        let pool = WorkerPool(helpers: 8)
        var rng = SeededGenerator(seed: 4)
        let (m, k, n, parts) = (32, 784, 16, 13)
        let a = randomMatrix(m * k, &rng)
        let panels = (0..<parts).map { _ in randomMatrix(k * n, &rng) }
        let want: [[UInt32]] = panels.map { b in
            var c = [Float](repeating: 0, count: m * n)
            GEMM.nn(m: m, n: n, k: k, a: a, b: b, c: &c, threads: 1)
            return c.map(\.bitPattern)
        }
        let out = UnsafeMutableBufferPointer<Float>.allocate(capacity: parts * m * n)
        defer { out.deallocate() }
        nonisolated(unsafe) let shared = out
        var wrong = 0
        for _ in 0..<200 {
            shared.initialize(repeating: .nan)
            pool.run(parts: parts) { part in
                GEMM.nn(m: m, n: n, k: k, a: a, b: panels[part], c: shared.baseAddress! + part * m * n, threads: 1)
            }
            for part in 0..<parts where Array(shared[part * m * n..<(part + 1) * m * n]).map(\.bitPattern) != want[part]
            {
                wrong += 1
            }
        }
        #expect(wrong == 0)
    }
}
