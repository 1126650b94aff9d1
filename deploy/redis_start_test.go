package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The in-cluster Redis's start script, as components/redis renders it,
// and what it names that the test replaces.
const (
	redisWorkload     = "secretbroker-redis"
	redisPasswordDir  = "/etc/secretbroker-redis"
	redisDataFlag     = "--dir /data"
	redisPortFlag     = "--port 6379"
	redisStartTimeout = 10 * time.Second
)

// TestRedisStartScript runs the in-cluster Redis's start script, as
// rendered, with a real redis-server: the password from the mounted file
// is required of clients, and it is on neither the server's command line
// nor in its environment; a password the script cannot pass on intact is
// refused at start, without repeating it.
func TestRedisStartScript(t *testing.T) {
	serverPath, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server is not in PATH: install the Debian package redis-server (apt-get install -y redis-server)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI=true requires it")
		}
		t.Skip(msg)
	}
	script, mounts, env := redisStartScript(t)
	if len(env) > 0 {
		t.Errorf("the redis container has environment variables %v: the password's only way in is the mounted file", env)
	}
	if !mounts[redisPasswordDir] {
		t.Errorf("the redis container mounts no volume at %s", redisPasswordDir)
	}

	cases := []struct {
		name, password string
		refusal        string // "": the server starts
	}{
		{"planted password", plantedPassword, ""},
		{"base64 password", "q1Z+/e9Xw0Ab3T7u==", ""},
		{"with a space", plantedPassword + " x", "a character other than"},
		{"with a quote", plantedPassword + `"`, "a character other than"},
		{"empty", "", "empty"},
		{"with a final newline", plantedPassword + "\n", "ends with a newline"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "etc", "password"), []byte(tc.password), 0o600); err != nil {
				t.Fatal(err)
			}
			wrapper, seen := filepath.Join(dir, "redis-server"), filepath.Join(dir, "started-with")
			// The script as rendered, with the test's directories and a
			// loopback port.
			render := func(port int) string {
				local := script
				for _, r := range [][2]string{
					{redisPasswordDir, filepath.Join(dir, "etc")},
					{redisDataFlag, "--dir " + filepath.Join(dir, "data")},
					{redisPortFlag, "--port " + strconv.Itoa(port) + " --bind 127.0.0.1"},
				} {
					if n := strings.Count(local, r[0]); n != 1 {
						t.Fatalf("the start script names %q %d times, want once", r[0], n)
					}
					local = strings.Replace(local, r[0], r[1], 1)
				}
				if n := strings.Count(local, "exec redis-server "); n != 1 {
					t.Fatalf("the start script execs redis-server %d times, want once", n)
				}
				return strings.Replace(local, "exec redis-server ", "exec "+wrapper+" ", 1)
			}
			// redis-server through a wrapper that writes down the
			// arguments and the environment it is started with: Redis
			// rewrites its own command line in /proc once it runs.
			wrap := "#!/bin/sh\n{ printf '%s\\n' \"$@\"; env; } > " + seen + "\nexec " + serverPath + " \"$@\"\n"
			if err := os.WriteFile(wrapper, []byte(wrap), 0o700); err != nil {
				t.Fatal(err)
			}

			if tc.refusal != "" {
				// The script is to end before it runs redis-server: the
				// port is bound only where it fails to.
				srv := startScript(t, render(freePort(t)))
				out, err := srv.wait()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() == 0 {
					t.Fatalf("the script ran on (%v); want it to refuse the password\n%s", err, out)
				}
				if !strings.Contains(out, tc.refusal) {
					t.Errorf("the script's output does not say %q:\n%s", tc.refusal, out)
				}
				if strings.Contains(out, plantedPassword) {
					t.Errorf("the script's output repeats the password:\n%s", out)
				}
				return
			}
			srv, port := startRedis(t, freePort, render)
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			ctx := t.Context()
			anon := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer anon.Close()
			if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
				t.Errorf("PING without the password: %v, want NOAUTH", err)
			}
			authed := redis.NewClient(&redis.Options{Addr: addr, Password: tc.password, MaxRetries: -1})
			defer authed.Close()
			if err := authed.Ping(ctx).Err(); err != nil {
				t.Errorf("PING with the password: %v", err)
			}
			started, err := os.ReadFile(seen)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(started, []byte(tc.password)) {
				t.Errorf("redis-server was started with the password in its arguments or environment")
			}
			if !bytes.Contains(started, []byte("--maxmemory-policy\nnoeviction\n")) {
				t.Errorf("redis-server was not started with the script's flags:\n%s", started)
			}
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", srv.cmd.Process.Pid))
			if err != nil {
				t.Fatalf("reading the server's command line: %v", err)
			}
			if !bytes.Contains(cmdline, []byte("redis-server")) {
				t.Errorf("process %d is not redis-server (%q): the script did not exec it, so it would not get the pod's signals", srv.cmd.Process.Pid, cmdline)
			}
			// SIGTERM, as the kubelet sends it, reaches redis-server and
			// ends it.
			if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if out, err := srv.wait(); err != nil {
				t.Errorf("redis-server after SIGTERM: %v\n%s", err, out)
			}
		})
	}
}

// A port taken between its pick and redis-server's bind: startRedis runs
// the script again on another port, where the server answers.
func TestStartRedisPortTaken(t *testing.T) {
	serverPath, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not in PATH")
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	picks := 0
	pick := func(t *testing.T) int {
		picks++
		if picks == 1 {
			return taken
		}
		return freePort(t)
	}
	_, port := startRedis(t, pick, func(port int) string {
		return "exec " + serverPath + " --port " + strconv.Itoa(port) + " --bind 127.0.0.1 --save '' --appendonly no"
	})
	if picks != 2 || port == taken {
		t.Fatalf("%d ports picked, the server on %d (taken: %d); want 2, another port", picks, port, taken)
	}
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Errorf("PING: %v", err)
	}
}

// redisStartScript renders the overlay with the in-cluster Redis and
// returns the redis container's start script, its mount paths and the
// names of its environment variables.
func redisStartScript(t *testing.T) (script string, mounts map[string]bool, env []string) {
	t.Helper()
	r, err := parseRendered(build(t, "overlays/production-with-redis"))
	if err != nil {
		t.Fatal(err)
	}
	o := r.find("StatefulSet", redisWorkload)
	if o == nil {
		t.Fatalf("no StatefulSet %s in the render", redisWorkload)
	}
	var w workload
	if err := o.node.Decode(&w); err != nil {
		t.Fatal(err)
	}
	for _, c := range w.Spec.Template.Spec.Containers {
		if c.Name != "redis" {
			continue
		}
		if len(c.Command) != 2 || c.Command[0] != "/bin/sh" || c.Command[1] != "-c" || len(c.Args) != 1 {
			t.Fatalf("the redis container runs %q %q, want /bin/sh -c and one script", c.Command, c.Args)
		}
		mounts = map[string]bool{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = true
		}
		for _, e := range c.Env {
			env = append(env, e.Name)
		}
		return c.Args[0], mounts, env
	}
	t.Fatalf("StatefulSet %s has no container redis", redisWorkload)
	return "", nil, nil
}

// redisStartAttempts bounds how many ports startRedis tries.
const redisStartAttempts = 5

// startRedis runs script(port) for a port from pick and waits until its
// redis-server is ready. A port free when picked can be taken by another
// process before redis-server binds it: where redis-server says so
// (Address already in use), it runs the script again on another port, up
// to redisStartAttempts times.
func startRedis(t *testing.T, pick func(*testing.T) int, script func(port int) string) (*scriptRun, int) {
	t.Helper()
	var out string
	for range redisStartAttempts {
		port := pick(t)
		srv := startScript(t, script(port))
		taken := srv.readyOrTaken(t)
		if !taken {
			return srv, port
		}
		out = srv.out.String()
	}
	t.Fatalf("%d ports in a row were taken before redis-server could bind them; the last run:\n%s", redisStartAttempts, out)
	return nil, 0
}

// freePort is a loopback port free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// scriptRun is the start script running under /bin/sh.
type scriptRun struct {
	cmd   *exec.Cmd
	lines chan string // its output, line by line; closed at its end
	done  chan error  // its exit
	out   strings.Builder
}

// startScript runs script with /bin/sh -c, as the container does, and
// kills it at the test's end.
func startScript(t *testing.T, script string) *scriptRun {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the script: %v", err)
	}
	s := &scriptRun{cmd: cmd, lines: make(chan string, 64), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		// Drain until the reader ends.
		for range s.lines {
		}
	})
	return s
}

// readyOrTaken waits for redis-server to accept connections (false), or
// for the script to end because redis-server found its port taken (true).
func (s *scriptRun) readyOrTaken(t *testing.T) (taken bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), redisStartTimeout)
	defer cancel()
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				if strings.Contains(s.out.String(), "Address already in use") {
					return true
				}
				t.Fatalf("the script ended before redis-server was ready:\n%s", s.out.String())
			}
			s.out.WriteString(line + "\n")
			if strings.Contains(line, "Ready to accept connections") {
				return false
			}
		case <-ctx.Done():
			t.Fatalf("redis-server not ready within %s:\n%s", redisStartTimeout, s.out.String())
		}
	}
}

// wait returns the script's output and its exit, bounded by
// redisStartTimeout.
func (s *scriptRun) wait() (string, error) {
	timeout := time.NewTimer(redisStartTimeout)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return s.out.String(), <-s.done
			}
			s.out.WriteString(line + "\n")
		case <-timeout.C:
			return s.out.String(), fmt.Errorf("still running after %s", redisStartTimeout)
		}
	}
}
