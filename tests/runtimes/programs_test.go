package runtimes_test

// programs are, for each shipped runtime, the same few programs:
//
//	hello    prints "hello"
//	io       prints its first stdin line, its args and the content of data.txt, space
//	         separated, and writes "ok" to out.txt
//	fail     exits with code 3
//	broken   does not compile (compiled runtimes only)
//	spin     loops forever
//	hog      allocates memory until it is stopped
type programs struct {
	hello, io, fail, broken, spin, hog string
	// hogStatus is what the memory hog ends as where it is not memory_limit: a JVM
	// stops at its own heap limit with an OutOfMemoryError (exit 1) first.
	hogStatus string
}

var byRuntime = map[string]programs{
	"python": {
		hello: `print("hello")`,
		io: `import sys
line = sys.stdin.readline().strip()
data = open("data.txt").read().strip()
print(line, *sys.argv[1:], data)
open("out.txt", "w").write("ok")`,
		fail: `raise SystemExit(3)`,
		spin: `while True: pass`,
		hog:  `b = [b"x" * (1 << 20) for _ in range(4096)]`,
	},
	"javascript": {
		hello: `console.log("hello")`,
		io: `const fs = require("fs");
const line = fs.readFileSync(0, "utf8").split("\n")[0];
const data = fs.readFileSync("data.txt", "utf8").trim();
console.log([line, ...process.argv.slice(2), data].join(" "));
fs.writeFileSync("out.txt", "ok");`,
		fail: `process.exit(3)`,
		spin: `for (;;) {}`,
		hog:  `const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));`,
	},
	"typescript": {
		hello: `const msg: string = "hello"; console.log(msg);`,
		io: `import * as fs from "fs";
const line: string = fs.readFileSync(0, "utf8").split("\n")[0];
const data: string = fs.readFileSync("data.txt", "utf8").trim();
console.log([line, ...process.argv.slice(2), data].join(" "));
fs.writeFileSync("out.txt", "ok");`,
		fail:   `process.exit(3);`,
		broken: `const n: number = "not a number";`,
		spin:   `for (;;) {}`,
		hog:    `const a: Uint8Array[] = []; for (;;) a.push(new Uint8Array(1 << 20).fill(1));`,
	},
	"bash": {
		hello: `echo hello`,
		io: `read -r line
data=$(cat data.txt)
echo "$line${*:+ $*} $data"
printf ok > out.txt`,
		fail: `exit 3`,
		spin: `while :; do :; done`,
		hog:  `x=$(head -c 400000000 /dev/zero | tr '\0' a); echo ${#x}`,
	},
	"c": {
		hello: `#include <stdio.h>
int main(void) { puts("hello"); return 0; }`,
		io: `#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
	char line[256] = {0}, data[256] = {0};
	if (!fgets(line, sizeof line, stdin)) return 1;
	line[strcspn(line, "\n")] = 0;
	FILE *f = fopen("data.txt", "r");
	if (!f || !fgets(data, sizeof data, f)) return 2;
	data[strcspn(data, "\n")] = 0;
	printf("%s", line);
	for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
	printf(" %s\n", data);
	FILE *o = fopen("out.txt", "w");
	fputs("ok", o);
	fclose(o);
	return 0;
}`,
		fail:   `int main(void) { return 3; }`,
		broken: `int main(void) { return undefined_thing; }`,
		spin:   `int main(void) { volatile unsigned long x = 0; for (;;) x++; }`,
		hog: `#include <stdlib.h>
#include <string.h>
int main(void) { for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); } }`,
	},
	"c++": {
		hello: `#include <iostream>
int main() { std::cout << "hello" << std::endl; }`,
		io: `#include <fstream>
#include <iostream>
#include <string>
int main(int argc, char **argv) {
	std::string line, data;
	std::getline(std::cin, line);
	std::ifstream f("data.txt");
	std::getline(f, data);
	std::cout << line;
	for (int i = 1; i < argc; i++) std::cout << " " << argv[i];
	std::cout << " " << data << "\n";
	std::ofstream("out.txt") << "ok";
}`,
		fail:   `int main() { return 3; }`,
		broken: `int main() { std::string s; }`,
		spin:   `int main() { volatile unsigned long x = 0; for (;;) x++; }`,
		hog: `#include <vector>
int main() { std::vector<std::vector<char>> v; for (;;) v.emplace_back(1 << 20, 1); }`,
	},
	"java": {
		hello: `public class Main { public static void main(String[] a) { System.out.println("hello"); } }`,
		io: `import java.io.*;
import java.nio.file.*;
public class Main {
	public static void main(String[] args) throws Exception {
		String line = new BufferedReader(new InputStreamReader(System.in)).readLine();
		String data = Files.readString(Path.of("data.txt")).trim();
		StringBuilder sb = new StringBuilder(line);
		for (String s : args) sb.append(" ").append(s);
		System.out.println(sb.append(" ").append(data));
		Files.writeString(Path.of("out.txt"), "ok");
	}
}`,
		fail:      `public class Main { public static void main(String[] a) { System.exit(3); } }`,
		broken:    `public class Main { public static void main(String[] a) { int x = "s" } }`,
		spin:      `public class Main { public static void main(String[] a) { long x = 0; while (true) x++; } }`,
		hog:       `public class Main { public static void main(String[] a) { var l = new java.util.ArrayList<byte[]>(); for (;;) l.add(new byte[1 << 20]); } }`,
		hogStatus: "error",
	},
	"go": {
		hello: `package main
import "fmt"
func main() { fmt.Println("hello") }`,
		io: `package main
import (
	"bufio"
	"fmt"
	"os"
	"strings"
)
func main() {
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	d, err := os.ReadFile("data.txt")
	if err != nil {
		os.Exit(2)
	}
	parts := append([]string{strings.TrimSpace(line)}, os.Args[1:]...)
	fmt.Println(strings.Join(append(parts, strings.TrimSpace(string(d))), " "))
	os.WriteFile("out.txt", []byte("ok"), 0o644)
}`,
		fail: `package main
import "os"
func main() { os.Exit(3) }`,
		broken: `package main
func main() { x := 1 }`,
		spin: `package main
func main() { for {} }`,
		hog: `package main
func main() {
	var s [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := range b { b[i] = 1 }
		s = append(s, b)
	}
}`,
	},
	"rust": {
		hello: `fn main() { println!("hello"); }`,
		io: `use std::io::BufRead;
fn main() {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let data = std::fs::read_to_string("data.txt").unwrap();
    let mut parts = vec![line.trim().to_string()];
    parts.extend(std::env::args().skip(1));
    parts.push(data.trim().to_string());
    println!("{}", parts.join(" "));
    std::fs::write("out.txt", "ok").unwrap();
}`,
		fail:   `fn main() { std::process::exit(3); }`,
		broken: `fn main() { let x: i32 = "a"; }`,
		spin: `fn main() {
    let mut x = 0u64;
    loop { unsafe { std::ptr::write_volatile(&mut x, x + 1); } }
}`,
		hog: `fn main() { let mut v = Vec::new(); loop { v.push(vec![1u8; 1 << 20]); } }`,
	},
	"ruby": {
		hello: `puts "hello"`,
		io: `line = $stdin.gets.to_s.strip
data = File.read("data.txt").strip
puts ([line] + ARGV + [data]).join(" ")
File.write("out.txt", "ok")`,
		fail: `exit 3`,
		spin: `loop {}`,
		hog:  `a = []; loop { a << ("x" * (1 << 20)) }`,
	},
}
