package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/internal/torchinfo"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/train"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// loadTaskConfig is train.LoadConfig: the config's task, loaded strictly.
func loadTaskConfig(path string, sets []string) (train.Task, train.Config, error) {
	return train.LoadConfig(path, sets)
}

func trainCommand() *cli.Command {
	var sets multiFlag
	var out, resume, device, allow string
	var overwrite bool
	var nproc int
	return &cli.Command{
		Name:  "train",
		Short: "run the experiment a TOML config describes",
		Usage: "[-set section.key=value]... [-device cpu|cuda] [-nproc N] [-out DIR [-overwrite] | -resume DIR [-allow-change KEYS]] CONFIG",
		Long: `train runs the config's task, writing the resolved config (config.toml),
metrics.jsonl, checkpoints and results.json to the run directory (default
runs/<config>-<time>). The directory is locked while the run lives; a directory
that is not empty is refused unless -resume continues it or -overwrite moves its
contents aside. A resume must use the run's config: -allow-change lets named keys
differ (for example trainer.max_steps), and records the change. Ctrl-C (SIGINT) or
SIGTERM finishes the step, writes a checkpoint and exits; a second one exits at once.

-nproc N runs N data-parallel ranks on this machine, as torchrun --standalone
--nproc-per-node N does (see dist/doc.go): data.batch is per rank, rank 0 writes
the run directory and prints, the others' output goes to stderr prefixed with
[rank R], and a signal reaches every rank once.`,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(&sets, "set", "override a config key, e.g. -set trainer.epochs=3 (repeatable)")
			fs.StringVar(&out, "out", "", "run directory")
			fs.StringVar(&resume, "resume", "", "continue the run in DIR from its newest checkpoint that verifies")
			fs.StringVar(&device, "device", "", "cpu or cuda (same as -set trainer.device=...)")
			fs.BoolVar(&overwrite, "overwrite", false, "start afresh in a directory that is not empty, moving its contents into DIR/replaced-<time>/")
			fs.StringVar(&allow, "allow-change", "", "comma-separated config keys a resume may change, e.g. trainer.max_steps")
			fs.IntVar(&nproc, "nproc", 1, "data-parallel ranks to start on this machine")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 {
				return cli.Usagef("train takes one CONFIG")
			}
			if device != "" {
				sets = append(sets, fmt.Sprintf("trainer.device=%q", device))
			}
			task, cfg, err := loadTaskConfig(args[0], sets)
			if err != nil {
				return err
			}
			if resume != "" {
				if out != "" && out != resume {
					return cli.Usagef("-out and -resume name different directories")
				}
				out = resume
			}
			if out == "" {
				base := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
				out = filepath.Join("runs", base+"-"+time.Now().Format("20060102-150405"))
			}
			if overwrite && resume != "" {
				return cli.Usagef("-overwrite starts afresh; it cannot go with -resume")
			}
			var allowed []string
			for _, k := range strings.Split(allow, ",") {
				if k = strings.TrimSpace(k); k != "" {
					allowed = append(allowed, k)
				}
			}
			if nproc > 1 {
				if os.Getenv("WORLD_SIZE") != "" {
					return cli.Usagef("-nproc starts ranks itself; this process already is one (WORLD_SIZE is set)")
				}
				child := []string{"train", "-out", out}
				if resume != "" {
					child = []string{"train", "-resume", out}
				}
				for _, x := range sets {
					child = append(child, "-set", x)
				}
				if overwrite {
					child = append(child, "-overwrite")
				}
				if allow != "" {
					child = append(child, "-allow-change", allow)
				}
				return launchRanks(env, nproc, append(child, args[0]))
			} else if nproc < 1 {
				return cli.Usagef("-nproc must be at least 1, got %d", nproc)
			}
			fmt.Fprintf(env.Stdout, "%s: task %s, run directory %s\n", args[0], task.TaskName(), out)
			fmt.Fprintf(env.Stdout, "cpu: %s\n", torchinfo.CPUKernels())
			return train.Run(task, cfg, train.RunOptions{Out: out, Resume: resume != "", W: env.Stdout, Overwrite: overwrite, AllowChange: allowed, Signals: true})
		},
	}
}

func evalCommand() *cli.Command {
	var sets multiFlag
	var checkpoint, device string
	return &cli.Command{
		Name:  "eval",
		Short: "evaluate trained weights as a config describes",
		Usage: "-checkpoint PATH [-set section.key=value]... [-device cpu|cuda] CONFIG",
		Long: `eval builds the config's model, loads PATH (a checkpoint folder, a run folder's
newest checkpoint, or a weight file) and runs the task's evaluation.`,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(&sets, "set", "override a config key (repeatable)")
			fs.StringVar(&checkpoint, "checkpoint", "", "checkpoint folder, run folder or weight file")
			fs.StringVar(&device, "device", "", "cpu or cuda (same as -set trainer.device=...)")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 1 || checkpoint == "" {
				return cli.Usagef("eval takes -checkpoint PATH and one CONFIG")
			}
			if device != "" {
				sets = append(sets, fmt.Sprintf("trainer.device=%q", device))
			}
			task, cfg, err := loadTaskConfig(args[0], sets)
			if err != nil {
				return err
			}
			if file, err := torchmods.ResolveWeights(checkpoint); err == nil && file != checkpoint {
				fmt.Fprintf(env.Stdout, "evaluating %s\n", file)
			}
			return train.Eval(task, cfg, checkpoint, env.Stdout)
		},
	}
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Short: "validate experiment configs",
		Sub: []*cli.Command{{
			Name:  "check",
			Short: "validate configs without running them",
			Usage: "FILE...",
			Run: func(env *cli.Env, args []string) error {
				if len(args) == 0 {
					return cli.Usagef("check takes at least one FILE")
				}
				bad := 0
				for _, p := range args {
					task, _, err := loadTaskConfig(p, nil)
					if err != nil {
						fmt.Fprintln(env.Stdout, err)
						bad++
						continue
					}
					fmt.Fprintf(env.Stdout, "%s: ok (%s)\n", p, task.TaskName())
				}
				if bad > 0 {
					return fmt.Errorf("%d of %d configs are invalid", bad, len(args))
				}
				return nil
			},
		}},
	}
}

// rankThreads is the OMP_NUM_THREADS each of n local ranks gets when the
// environment sets none: the cores shared out, at least 1 (torchrun sets
// 1 when it starts more than one worker). Without it every rank's
// libtorch starts a thread per core, and the ranks' threads fight: 2 ranks
// of the Fashion-MNIST MLP (batch 64 each, 300 steps) on 2 cores ran 69-82
// steps/s with 2 threads each and 89-96 with 1, 3 runs each. "" means
// leave the environment alone: one rank, or OMP_NUM_THREADS already set.
func rankThreads(n, cores int, env string) string {
	if n <= 1 || env != "" {
		return ""
	}
	return strconv.Itoa(max(1, cores/n))
}

// launchRanks runs this program n times with args, as torchrun's
// standalone mode runs n workers: RANK, LOCAL_RANK, WORLD_SIZE and
// LOCAL_WORLD_SIZE for each, MASTER_ADDR 127.0.0.1 and a free
// MASTER_PORT. Each rank runs in its own process group, so a Ctrl-C at the
// terminal reaches it once, forwarded from here as SIGTERM (a second one
// too: the ranks then exit at once), not twice. Rank 0 prints to stdout;
// the others' lines go to stderr prefixed with [rank R]. It returns the
// first failing rank's error.
func launchRanks(env *cli.Env, n int, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("-nproc: finding a free port for the rendezvous: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	fmt.Fprintf(env.Stderr, "repro train: starting %d ranks (MASTER_ADDR 127.0.0.1, MASTER_PORT %d)\n", n, port)
	threads := rankThreads(n, runtime.NumCPU(), os.Getenv("OMP_NUM_THREADS"))
	if threads != "" {
		fmt.Fprintf(env.Stderr, "repro train: OMP_NUM_THREADS=%s for each rank (%d cores / %d ranks; torchrun sets 1); set OMP_NUM_THREADS to choose\n", threads, runtime.NumCPU(), n)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	cmds := make([]*exec.Cmd, n)
	var copying sync.WaitGroup
	for r := range n {
		c := exec.Command(exe, args...)
		c.Env = append(os.Environ(), "RANK="+strconv.Itoa(r), "LOCAL_RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n),
			"LOCAL_WORLD_SIZE="+strconv.Itoa(n), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port))
		if threads != "" {
			c.Env = append(c.Env, "OMP_NUM_THREADS="+threads)
		}
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if r == 0 {
			c.Stdout, c.Stderr = env.Stdout, env.Stderr
		} else {
			pr, pw := io.Pipe()
			c.Stdout, c.Stderr = pw, pw
			copying.Add(1)
			go func(r int) {
				defer copying.Done()
				sc := bufio.NewScanner(pr)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					fmt.Fprintf(env.Stderr, "[rank %d] %s\n", r, sc.Text())
				}
				io.Copy(io.Discard, pr) // a line over 1 MiB: drain, so the rank never blocks
			}(r)
			defer pw.Close()
		}
		if err := c.Start(); err != nil {
			for _, p := range cmds[:r] {
				p.Process.Kill()
			}
			return fmt.Errorf("-nproc: starting rank %d: %w", r, err)
		}
		cmds[r] = c
	}
	go func() {
		for range sigs {
			for _, c := range cmds {
				c.Process.Signal(syscall.SIGTERM)
			}
		}
	}()
	var first error
	for r, c := range cmds {
		if err := c.Wait(); err != nil && first == nil {
			first = fmt.Errorf("rank %d: %w", r, err)
		}
		if w, ok := c.Stdout.(*io.PipeWriter); ok {
			w.Close()
		}
	}
	copying.Wait()
	var ee *exec.ExitError
	if errors.As(first, &ee) {
		return fmt.Errorf("%w (the ranks' own messages are above)", first)
	}
	return first
}
