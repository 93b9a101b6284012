package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/pmlm"
	"github.com/reprolab/repro/train"
)

func pmlmCommand() *cli.Command {
	return &cli.Command{
		Name:  "pmlm",
		Short: "UniLMv2 (Bao et al., 2020): generate with a sequence-to-sequence fine-tuned model",
		Sub:   []*cli.Command{pmlmGenerate()},
	}
}

func pmlmGenerate() *cli.Command {
	var run, cfg, device, in string
	beam, maxLen := 0, 0
	return &cli.Command{
		Name:  "generate",
		Short: "decode sources with a pmlm.s2s run",
		Usage: "-run RUN [-in FILE] [TEXT]...",
		Long: `generate decodes each source (the arguments, or the lines of -in: plain text, or s2s-ft's
JSON lines, whose "src" is read) with a pmlm.s2s run as decode_seq2seq.py does, with the run's
[decode] settings (beam search, n-gram blocking, min and max length) unless -beam or -max-len
say otherwise, and prints one generated text per line.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&run, "run", "", "a pmlm.s2s run folder (its newest checkpoint), checkpoint folder or weight file")
			fs.StringVar(&cfg, "config", "", "the run's config.toml (default: found beside -run)")
			fs.StringVar(&device, "device", "cpu", "cpu or cuda")
			fs.StringVar(&in, "in", "", "a file of sources, one per line (text or s2s-ft JSON lines)")
			fs.IntVar(&beam, "beam", 0, "beam size (0: the run's decode.beam_size)")
			fs.IntVar(&maxLen, "max-len", 0, "the most target tokens, [SEP] included (0: the run's decode.max_tgt_length)")
		},
		Run: func(env *cli.Env, args []string) error {
			if run == "" {
				return cli.Usagef("-run names the fine-tuned model")
			}
			sources := args
			if in != "" {
				if len(args) > 0 {
					return cli.Usagef("give sources as arguments or with -in, not both")
				}
				var err error
				if sources, err = readSources(in); err != nil {
					return err
				}
			}
			if len(sources) == 0 {
				return cli.Usagef("nothing to decode: give sources as arguments or with -in")
			}
			dev, err := train.DeviceOf(train.TrainerConfig{Device: device})
			if err != nil {
				return err
			}
			s := ts.NewScope()
			defer s.Close()
			g, err := pmlm.LoadGenerator(run, cfg, dev, env.Stderr)
			if err != nil {
				return err
			}
			defer g.Drop()
			if beam > 0 {
				g.Decode.BeamSize = beam
			}
			if maxLen > 0 {
				g.Decode.MaxTgtLength = maxLen
			}
			for i, src := range sources {
				if strings.TrimSpace(src) == "" {
					fmt.Fprintln(env.Stdout)
					continue
				}
				out, err := g.Generate(src)
				if err != nil {
					return fmt.Errorf("source %d: %w", i+1, err)
				}
				fmt.Fprintln(env.Stdout, out)
			}
			return nil
		},
	}
}

// readSources reads one source per line: s2s-ft's JSON lines (the "src"
// of each, text or word pieces) when the file starts with a JSON object,
// else plain text, where a blank line is a source too, so that the output
// lines up with the input.
func readSources(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	jsonl := strings.HasPrefix(strings.TrimSpace(string(b)), "{")
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case jsonl && line == "":
		case jsonl:
			var r struct {
				Src json.RawMessage `json:"src"`
			}
			src, err := "", json.Unmarshal([]byte(line), &r)
			if err == nil {
				src, err = pmlm.SourceText(r.Src)
			}
			if err != nil {
				return nil, fmt.Errorf(`%s:%d: want a JSON object with a "src" string or list of word pieces, as s2s-ft's files`, path, n)
			}
			out = append(out, src)
		default: // one output line per input line, blank ones included
			out = append(out, line)
		}
	}
	return out, sc.Err()
}
