import Foundation
import XCTest

/// The README's commands must name things that exist, so the front page cannot drift from the
/// code. Commands are taken from the README's fenced code blocks (`sh`, `bash`, `shell`,
/// `console` and unlabelled blocks; in any block, lines starting with `$ `) and from inline code
/// spans that start like a command (the headline table's "reproduce" column). For each:
///
/// - `bash scripts/X …`, `scripts/X …`, `python3 scripts/X …`: the file exists, and each `--flag`
///   appears in the script (or, for a script that forwards `"$@"` to `backprop SUB`, is a flag of SUB);
/// - `swift run [-c release] [--package-path P] T …`: T is a target or product of the package's
///   Package.swift, and each `--flag` after T appears in T's sources (for `backprop`, as below);
/// - `backprop SUB …` (also `.build/release/backprop`, `swift run backprop`): SUB is a subcommand
///   listed by the built `backprop --help`, and each `--flag` is listed by `backprop SUB --help`.
///
/// The same goes for `docs/cli.md`, the command reference the README links to. Separately, every
/// relative link and every repository path in inline code of both must exist.
final class ReadmeCommandTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Command { let line: Int; let text: String }

    /// The README, and the CLI reference it links to.
    static let documents = ["README.md", "docs/cli.md"]

    func testEveryReadmeCommandNamesAnExistingScriptTargetSubcommandAndFlag() throws {
        var checker = Checker()
        var failures: [String] = []
        for document in Self.documents {
            let commands = Self.commands(in: try Self.read(document))
            for c in commands {
                for problem in try checker.problems(c.text) { failures.append("\(document):\(c.line): `\(c.text)`: \(problem)") }
            }
            print("ReadmeCommandTests: \(document): \(commands.count) commands checked")
        }
        print("ReadmeCommandTests: \(checker.checkedFlags) flags checked")
        XCTAssertTrue(failures.isEmpty, "\n" + failures.joined(separator: "\n"))
        let readme = try Self.read("README.md")
        let commands = Self.commands(in: readme)
        // The front page's two commands are among those checked.
        let texts = commands.map(\.text)
        XCTAssertTrue(texts.contains { $0.hasPrefix("bash scripts/mnist") }, "README lost `bash scripts/mnist`")
        XCTAssertTrue(texts.contains { $0.hasPrefix("bash scripts/test") }, "README lost `bash scripts/test`")
        XCTAssertGreaterThan(checker.checkedFlags, 10, "the CLI summary's flags were not found; is the parser still right?")
    }

    func testEveryReadmeLinkAndPathExists() throws {
        var missing: [String] = []
        func exists(_ path: URL) -> Bool { FileManager.default.fileExists(atPath: path.standardizedFileURL.path) }
        for document in Self.documents {
            let folder = Self.root.appendingPathComponent((document as NSString).deletingLastPathComponent)
            for (i, line) in try Self.read(document).components(separatedBy: "\n").enumerated() {
                // Markdown links and images to relative paths, relative to the document.
                for link in Self.matches(#"\]\(([^)#\s]+)"#, in: line) where !link.contains("://") && !link.hasPrefix("mailto:") {
                    if !exists(folder.appendingPathComponent(link)) { missing.append("\(document):\(i + 1): link \(link)") }
                }
                // Repository paths in inline code (`Sources/…`, `docs/…`, …), relative to the root.
                for path in Self.matches(#"`((?:Sources|Tests|docs|scripts|Benchmarks)/[^`\s*…]*)`"#, in: line) {
                    if !exists(Self.root.appendingPathComponent(path)) { missing.append("\(document):\(i + 1): path \(path)") }
                }
            }
        }
        XCTAssertTrue(missing.isEmpty, "missing: \n" + missing.joined(separator: "\n"))
    }

    // MARK: - Reading the documents

    static func read(_ document: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(document), encoding: .utf8)
    }

    /// Commands with their line numbers; continuation lines (`\` at the end, or an
    /// indented line starting with `[` or `--` in a usage block) are joined.
    static func commands(in readme: String) -> [Command] {
        let shellLanguages: Set<String> = ["", "sh", "bash", "shell", "console", "text"]
        var result: [Command] = []
        var fence: String?          // the open block's language, nil outside blocks
        var pending: (line: Int, text: String)?
        func flush() { if let p = pending { result.append(Command(line: p.line, text: p.text)) }; pending = nil }
        for (i, raw) in readme.components(separatedBy: "\n").enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("```") {
                flush()
                fence = fence == nil ? String(line.dropFirst(3)).trimmingCharacters(in: .whitespaces).lowercased() : nil
                continue
            }
            guard let language = fence else {
                // Outside blocks: inline code spans that start like a command.
                for span in matches("`([^`]+)`", in: raw) where looksLikeCommand(span) {
                    result.append(Command(line: i + 1, text: span))
                }
                continue
            }
            var text = line
            let dollar = text.hasPrefix("$ ")
            if dollar { text = String(text.dropFirst(2)) }
            guard dollar || shellLanguages.contains(language) else { continue }
            if let p = pending, raw.first == " " || p.text.hasSuffix("\\"), text.hasPrefix("[") || text.hasPrefix("--") || p.text.hasSuffix("\\") {
                pending = (p.line, (p.text.hasSuffix("\\") ? String(p.text.dropLast()) : p.text) + " " + text)
                continue
            }
            flush()
            if looksLikeCommand(text, paths: dollar || !["", "text"].contains(language)) { pending = (i + 1, text) }
        }
        flush()
        return result
    }

    /// A command starts with a program word, or (`paths`: in shell blocks and inline code) with a
    /// script or binary path; the layout tree's `scripts/   …` and `Sources/backprop   …` are not.
    static func looksLikeCommand(_ text: String, paths: Bool = true) -> Bool {
        let words = Checker.words(text)
        guard let first = words.first else { return false }
        if ["bash", "python3", "python", "swift"].contains(first) { return words.count > 1 }
        if first == "backprop" { return true }
        guard paths else { return false }
        return first.hasPrefix("scripts/") && first.count > "scripts/".count
            || (first.hasPrefix(".") || first.hasPrefix("$(")) && first.hasSuffix("/backprop")
    }

    static func matches(_ pattern: String, in text: String) -> [String] {
        guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
        let ns = text as NSString
        return re.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range(at: 1)) }
    }

    // MARK: - Checking one command

    struct Checker {
        var helpCache: [String: Set<String>] = [:]
        var subcommands: Set<String>?
        var checkedFlags = 0

        /// The words of a command: comments dropped, `VAR=value` prefixes dropped.
        static func words(_ text: String) -> [String] {
            var words: [String] = []
            for w in text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) {
                if w.hasPrefix("#") { break }
                if words.isEmpty, w.range(of: #"^[A-Z_][A-Z0-9_]*="#, options: .regularExpression) != nil { continue }
                words.append(w)
            }
            return words
        }

        static func flags(_ text: String) -> [String] {
            ReadmeCommandTests.matches(#"(?:^|[\s\[|("'])(--[a-z][a-z0-9-]*)"#, in: text)
        }

        static func read(_ path: URL) -> String? { try? String(contentsOf: path, encoding: .utf8) }

        mutating func problems(_ text: String) throws -> [String] {
            let words = Self.words(text)
            guard let first = words.first else { return [] }
            var rest = Array(words.dropFirst())
            if ["bash", "python3", "python"].contains(first) {
                guard let script = rest.first else { return [] }
                return try scriptProblems(script, Array(rest.dropFirst()))
            }
            if first.hasPrefix("scripts/") { return try scriptProblems(first, rest) }
            if first == "backprop" || first.hasSuffix("/backprop") { return try backpropProblems(rest) }
            if first == "mpirun" {   // `mpirun [options] backprop SUB …`: the backprop part is checked
                guard let i = rest.firstIndex(where: { $0 == "backprop" || $0.hasSuffix("/backprop") }) else {
                    return ["mpirun starts no backprop"]
                }
                return try backpropProblems(Array(rest[(i + 1)...]))
            }
            guard first == "swift", rest.first == "run" else { return [] }
            rest.removeFirst()
            var package = ReadmeCommandTests.root
            var target: String?
            while !rest.isEmpty {
                let w = rest.removeFirst()
                if ["-c", "--configuration", "--scratch-path"].contains(w) { _ = rest.isEmpty ? "" : rest.removeFirst(); continue }
                if w == "--package-path", !rest.isEmpty { package = package.appendingPathComponent(rest.removeFirst()); continue }
                if w.hasPrefix("-") { continue }
                target = w
                break
            }
            guard let target else { return ["`swift run` names no target"] }
            guard let manifest = Self.read(package.appendingPathComponent("Package.swift")) else {
                return ["no Package.swift in \(package.path)"]
            }
            guard manifest.contains("name: \"\(target)\"") else {
                return ["\(target) is not a target or product of \(package.lastPathComponent)/Package.swift"]
            }
            if target == "backprop" { return try backpropProblems(rest) }
            let sources = Self.sourceText(package.appendingPathComponent("Sources/\(target)"))
            return Self.flags(rest.joined(separator: " ")).compactMap { flag in
                checkedFlags += 1
                return sources.contains("\"\(flag)\"") ? nil : "\(flag) does not appear in Sources/\(target)"
            }
        }

        mutating func scriptProblems(_ script: String, _ arguments: [String]) throws -> [String] {
            let url = ReadmeCommandTests.root.appendingPathComponent(script)
            guard let body = Self.read(url) else { return ["\(script) does not exist"] }
            var allowed = Set(Self.flags(body))
            if body.contains("\"$@\"") {   // forwards its arguments, e.g. scripts/mnist → backprop train
                let known = try knownSubcommands()
                for sub in ReadmeCommandTests.matches(#"backprop ([a-z][a-z-]*)"#, in: body) where known.contains(sub) {
                    allowed.formUnion(try helpFlags(sub))
                }
            }
            return Self.flags(arguments.joined(separator: " ")).compactMap { flag in
                checkedFlags += 1
                return allowed.contains(flag) ? nil : "\(script) knows no \(flag)"
            }
        }

        mutating func backpropProblems(_ arguments: [String]) throws -> [String] {
            guard let sub = arguments.first, !sub.hasPrefix("-") else {
                let unknown = Self.flags(arguments.joined(separator: " ")).filter { $0 != "--help" }
                return unknown.map { "backprop takes no \($0) without a subcommand" }
            }
            guard try knownSubcommands().contains(sub) else { return ["backprop has no subcommand \(sub)"] }
            let known = try helpFlags(sub)
            return Self.flags(arguments.dropFirst().joined(separator: " ")).compactMap { flag in
                checkedFlags += 1
                return known.contains(flag) ? nil : "backprop \(sub) has no \(flag)"
            }
        }

        mutating func knownSubcommands() throws -> Set<String> {
            if let subcommands { return subcommands }
            let help = try CLI.run(["--help"])
            XCTAssertEqual(help.status, 0, help.stderr)
            // The SUBCOMMANDS section: one indented name at the start of each entry.
            let section = help.stdout.components(separatedBy: "SUBCOMMANDS:").last ?? ""
            let names = Set(ReadmeCommandTests.matches(#"(?m)^  ([a-z][a-z-]*)\s"#, in: section))
            XCTAssertTrue(names.contains("train"), "cannot read the subcommands from backprop --help:\n\(help.stdout)")
            subcommands = names
            return names
        }

        mutating func helpFlags(_ sub: String) throws -> Set<String> {
            if let cached = helpCache[sub] { return cached }
            let help = try CLI.run([sub, "--help"])
            XCTAssertEqual(help.status, 0, help.stderr)
            let flags = Set(Self.flags(help.stdout))
            helpCache[sub] = flags
            return flags
        }

        static func sourceText(_ folder: URL) -> String {
            guard let files = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) else { return "" }
            return files.compactMap { ($0 as? URL).flatMap { $0.pathExtension == "swift" ? read($0) : nil } }.joined()
        }
    }
}
