package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/runtimes"
	"github.com/sandboxd/sandboxd/sandbox"
)

var (
	imagesDir    = flag.String("images", "build/images", "directory of the runtimes' images (<image>.tar.zst); \"\" skips the runtime table")
	rtN          = flag.Int("runtime-n", 20, "jobs per runtime row (compiled runtimes: a quarter of it, at least 5)")
	runtimesOnly = flag.Bool("runtimes-only", false, "run only the per-runtime table")
)

// helloByRuntime is hello world in every shipped runtime.
var helloByRuntime = map[string]string{
	"python":     `print("hello")`,
	"javascript": `console.log("hello")`,
	"typescript": `const m: string = "hello"; console.log(m);`,
	"bash":       `echo hello`,
	"c":          "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }",
	"c++":        "#include <iostream>\nint main() { std::cout << \"hello\" << std::endl; }",
	"java":       `public class Main { public static void main(String[] a) { System.out.println("hello"); } }`,
	"go":         "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello\") }",
	"rust":       `fn main() { println!("hello"); }`,
	"ruby":       `puts "hello"`,
}

// runtimeTable prints, for every runtime the daemons offer, hello world's p50/p95
// through the API cold and (where the runtime has a pool) warm with the pool ready,
// beside the same compile and run commands run bare in a chroot of the same image.
func runtimeTable(client *http.Client, cold, warm *daemon) error {
	var list struct {
		Runtimes []struct {
			Name     string `json:"name"`
			Version  string `json:"version"`
			Compiled bool   `json:"compiled"`
			Warm     bool   `json:"warm"`
		} `json:"runtimes"`
	}
	resp, err := client.Get(warm.url + "/v1/runtimes")
	if err != nil {
		return err
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil {
		return err
	}
	shipped, err := runtimes.Shipped()
	if err != nil {
		return err
	}
	defs := map[string]sandbox.Runtime{}
	for _, rt := range shipped {
		defs[rt.Name] = rt
	}
	fmt.Printf("\nhello world per runtime (compile + run); jobs per row: %d, compiled runtimes %d\n\n", *rtN, max(*rtN/4, 5))
	fmt.Printf("%-12s %-9s %17s %17s %17s %10s\n", "runtime", "version", "bare p50/p95 ms", "cold p50/p95 ms", "warm p50/p95 ms", "cold/bare")
	for _, rt := range list.Runtimes {
		def, code := defs[rt.Name], helloByRuntime[rt.Name]
		if code == "" {
			fmt.Printf("%-12s (no hello world in bench)\n", rt.Name)
			continue
		}
		n := *rtN
		if rt.Compiled {
			n = max(n/4, 5)
		}
		tree, err := unpackedRootfs(daemonState(0), filepath.Join(*imagesDir, def.Image+".tar.zst"))
		if def.Image == "python" {
			tree, err = unpackedRootfs(daemonState(0), *tarball)
		}
		if err != nil {
			return err
		}
		bare, err := bareRunner(tree, def, code)
		if err != nil {
			return fmt.Errorf("%s bare: %w", rt.Name, err)
		}
		body, _ := json.Marshal(map[string]string{"language": rt.Name, "code": code})
		job := func(d *daemon, wantWarm bool) func() error {
			return func() error { return executeBody(client, d.url, body, wantWarm) }
		}
		cells := []string{}
		var bareP50, coldP50 float64
		for i, f := range []func() error{bare.run, job(cold, false), job(warm, true)} {
			if i == 2 && !rt.Warm {
				cells = append(cells, "-")
				continue
			}
			if i == 2 {
				inner := f
				f = func() error { time.Sleep(100 * time.Millisecond); paceStart = time.Now(); return inner() }
			}
			if err := f(); err != nil { // warm caches
				bare.close()
				return fmt.Errorf("%s: %w", rt.Name, err)
			}
			lat, err := series(f, n)
			if err != nil {
				bare.close()
				return fmt.Errorf("%s: %w", rt.Name, err)
			}
			p50 := pct(lat, 50)
			switch i {
			case 0:
				bareP50 = p50
			case 1:
				coldP50 = p50
			}
			cells = append(cells, fmt.Sprintf("%.1f / %.1f", p50, pct(lat, 95)))
		}
		bare.close()
		fmt.Printf("%-12s %-9s %17s %17s %17s %9.2fx\n", rt.Name, rt.Version, cells[0], cells[1], cells[2], coldP50/bareP50)
	}
	fmt.Println("\nbare: the runtime's own compile and run argv, as root, chrooted into the unpacked image with a tmpfs /work, /proc and /dev; no namespaces, cgroups or limits")
	return nil
}

// executeBody posts a job and checks it printed hello.
func executeBody(c *http.Client, url string, body []byte, warm bool) error {
	resp, err := c.Post(url+"/v1/execute", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Stdout, Stderr string
		Warm                   bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || r.Status != "ok" || r.Stdout != "hello\n" {
		return fmt.Errorf("HTTP %d status %q stdout %q stderr %q", resp.StatusCode, r.Status, r.Stdout, r.Stderr)
	}
	if warm {
		warmJobs.Add(1)
		if !r.Warm {
			coldFallbacks.Add(1)
		}
	}
	return nil
}

// bare runs a runtime's commands in a chroot of its image: a tmpfs at /work (its /tmp
// too), the host's /dev and a /proc mounted for the bench and removed after.
type bare struct {
	tree   string
	mounts []string
	steps  [][]string
	env    []string
	code   []byte
	main   string
}

func bareRunner(tree string, rt sandbox.Runtime, code string) (*bare, error) {
	b := &bare{tree: tree, code: []byte(code), main: rt.Main,
		env: append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/work", "LANG=C.UTF-8", "TMPDIR=/tmp"}, rt.Env...)}
	files := []string{rt.Main}
	if rt.Compiled() {
		b.steps = append(b.steps, sandbox.ExpandArgv(rt.Compile, rt.Main, files, nil))
	}
	b.steps = append(b.steps, sandbox.ExpandArgv(rt.Run, rt.Main, files, nil))
	for _, m := range []struct{ src, dst, fstype string }{
		{"tmpfs", "work", "tmpfs"}, {filepath.Join(tree, "work"), "tmp", ""}, {"/dev", "dev", ""}, {"proc", "proc", "proc"},
	} {
		dst := filepath.Join(tree, m.dst)
		flags := uintptr(0)
		if m.fstype == "" {
			flags = syscall.MS_BIND
		}
		if err := syscall.Mount(m.src, dst, m.fstype, flags, ""); err != nil {
			b.close()
			return nil, fmt.Errorf("mount %s: %w", dst, err)
		}
		b.mounts = append(b.mounts, dst)
	}
	return b, nil
}

func (b *bare) run() error {
	work := filepath.Join(b.tree, "work")
	ents, _ := os.ReadDir(work)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(work, e.Name()))
	}
	if err := os.MkdirAll(filepath.Join(work, ".out"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, b.main), b.code, 0o644); err != nil {
		return err
	}
	var out []byte
	for _, argv := range b.steps {
		cmd := exec.Command(argv[0], argv[1:]...)
		// The command is looked up in the image, as the job's PATH would, not the host's.
		cmd.Path, cmd.Err = b.lookPath(argv[0]), nil
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: b.tree}
		cmd.Dir, cmd.Env = "/work", b.env
		var err error
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v: %s", argv, err, out)
		}
	}
	if string(out) != "hello\n" {
		return fmt.Errorf("printed %q", out)
	}
	return nil
}

// lookPath finds a command in the image's PATH directories; a path is kept as it is.
func (b *bare) lookPath(cmd string) string {
	if strings.Contains(cmd, "/") {
		return cmd
	}
	for _, d := range strings.Split(strings.TrimPrefix(b.env[0], "PATH="), ":") {
		if _, err := os.Lstat(filepath.Join(b.tree, d, cmd)); err == nil {
			return filepath.Join(d, cmd)
		}
	}
	return cmd
}

func (b *bare) close() {
	for i := len(b.mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(b.mounts[i], syscall.MNT_DETACH)
	}
	b.mounts = nil
}
