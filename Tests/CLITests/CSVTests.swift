import FedTestSupport
import Foundation
import Testing

@testable import FedBench

/// The CSV every bench writes, against RFC 4180 and a reader nobody here wrote (Python's csv module).
@Suite("CSV files of the benches")
struct CSVTests {
    @Test("Fields with a comma, a quote or a line break are quoted, inner quotes doubled; others are left alone")
    func quoting() {
        #expect(CSV.field("int8") == "int8")
        #expect(CSV.field("") == "")
        #expect(CSV.field("10 Mbit/s, 30 ms") == "\"10 Mbit/s, 30 ms\"")
        #expect(CSV.field("int2-delta,fetch=int2") == "\"int2-delta,fetch=int2\"")
        #expect(CSV.field("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(CSV.field("two\nlines") == "\"two\nlines\"")
        #expect(CSV.field("cr\rlf") == "\"cr\rlf\"")
        #expect(CSV.field("crlf\r\n") == "\"crlf\r\n\"")
        #expect(CSV.record(["a,b", 3, 0.5]) == "\"a,b\",3,0.5\n")
        #expect(CSV.document(header: ["x", "y"], rows: [[1, "p\"q"]]) == "x,y\n1,\"p\"\"q\"\n")
    }

    @Test("Python's csv module reads back every field exactly")
    func pythonReadsItBack() throws {
        let rows: [[Any]] = [
            ["10 Mbit/s, 30 ms", "tc", "int2-delta,fetch=int2", 1234, 0.25],
            ["quote \" inside", "new\nline", "plain", 0, -1.5],
        ]
        let text = CSV.document(header: ["link", "shaping", "encoding", "bytes", "seconds"], rows: rows)
        let dir = try temporaryDirectory("csv")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.csv").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let script = "import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline='')))))"
        let (status, output) = try FedProcess.run(
            executable: URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script, path])
        #expect(status == 0, "\(output)")
        let read = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String]]
        let want = [["link", "shaping", "encoding", "bytes", "seconds"]] + rows.map { $0.map { "\($0)" } }
        #expect(read == want, "\(output)")
    }
}
