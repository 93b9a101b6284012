package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/audio"
	"github.com/reprolab/repro/internal/cli"
	"github.com/reprolab/repro/train"
	"github.com/reprolab/repro/vampnet"
)

func vampnetCommand() *cli.Command {
	return &cli.Command{
		Name:  "vampnet",
		Short: "VampNet (Garcia et al., ISMIR 2023): encode music to codec codes, decode them, vamp a WAV with a prompt",
		Long: `The codec and the transformers are trained by "repro train" with vampnet.codec and
vampnet.train configs (configs/vampnet/). -codec takes a vampnet.codec run folder or a lac
weights file (-codec-rate gives its sample rate); -coarse and -c2f take vampnet.train runs.

	repro vampnet encode -codec runs/codec song.wav song.codes.safetensors
	repro vampnet decode -codec runs/codec song.codes.safetensors song.wav
	repro vampnet vamp -codec runs/codec -coarse runs/coarse -c2f runs/c2f -periodic 16 -onsets 5 in.wav out.wav`,
		Sub: []*cli.Command{vampnetEncode(), vampnetDecode(), vampnetVamp()},
	}
}

// vampnetFlags are the flags every vampnet command shares.
type vampnetFlags struct {
	codec, device string
	rate          int64
}

func (f *vampnetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.codec, "codec", "", "a vampnet.codec run folder or a lac weights file")
	fs.Int64Var(&f.rate, "codec-rate", 44100, "the sample rate of a lac weights file (a run folder says its own)")
	fs.StringVar(&f.device, "device", "cpu", "cpu or cuda")
}

func (f *vampnetFlags) open(coarse, c2f string) (*vampnet.Interface, error) {
	if f.codec == "" {
		return nil, cli.Usagef("-codec is needed")
	}
	dev, err := train.DeviceOf(train.TrainerConfig{Device: f.device})
	if err != nil {
		return nil, cli.Usagef("-device: %v", err)
	}
	return vampnet.OpenInterface(f.codec, f.rate, coarse, c2f, dev)
}

// readAudio reads a WAV file and prepares it for the codec (rate, mono,
// -24 LUFS), saying what it converted; it returns the file's loudness.
func readAudio(in *vampnet.Interface, path string, env *cli.Env) (*audio.Audio, float64, error) {
	a, err := audio.ReadWAV(path)
	if err != nil {
		return nil, 0, err
	}
	return in.Prepare(a, func(format string, args ...any) { fmt.Fprintf(env.Stderr, path+": "+format+"\n", args...) })
}

func vampnetEncode() *cli.Command {
	var f vampnetFlags
	return &cli.Command{
		Name:  "encode",
		Short: "encode a WAV file to codec codes (safetensors)",
		Usage: "-codec CODEC IN.wav OUT.safetensors",
		Long: `encode mixes IN to mono and resamples it to the codec's rate when they differ (and says so),
then writes its codes [1, codebooks, frames] as an int64 tensor "codes", with the codec's sample
rate and hop in the file's metadata.`,
		Flags: f.register,
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 2 {
				return cli.Usagef("want IN.wav and OUT.safetensors")
			}
			in, err := f.open("", "")
			if err != nil {
				return err
			}
			a, _, err := readAudio(in, args[0], env)
			if err != nil {
				return err
			}
			codes, err := in.Encode(a)
			if err != nil {
				return err
			}
			if err := in.WriteCodes(args[1], codes); err != nil {
				return err
			}
			s := codes.MustSize()
			fmt.Fprintf(env.Stdout, "%s: %d codebooks x %d frames (%.2f s at %d Hz)\n", args[1], s[1], s[2], a.Duration(), a.SampleRate)
			return nil
		},
	}
}

func vampnetDecode() *cli.Command {
	var f vampnetFlags
	return &cli.Command{
		Name:  "decode",
		Short: "decode codec codes (from encode or vamp) to a WAV file",
		Usage: "-codec CODEC IN.safetensors OUT.wav",
		Flags: f.register,
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 2 {
				return cli.Usagef("want IN.safetensors and OUT.wav")
			}
			in, err := f.open("", "")
			if err != nil {
				return err
			}
			codes, err := in.ReadCodes(args[0])
			if err != nil {
				return err
			}
			a, err := in.Decode(codes)
			if err != nil {
				return err
			}
			if err := audio.WriteWAV(args[1], a, audio.PCM16); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "%s: %.2f s at %d Hz\n", args[1], a.Duration(), a.SampleRate)
			return nil
		},
	}
}

func vampnetVamp() *cli.Command {
	var f vampnetFlags
	var coarse, c2f string
	var seed uint64
	o := vampnet.DefaultBuildMaskOptions(0, 0)
	so := vampnet.AppSampleOptions()
	return &cli.Command{
		Name:  "vamp",
		Short: "regenerate a WAV file around a prompt (periodic, prefix/suffix, onsets) and write the result and its spectrogram",
		Usage: "-codec CODEC -coarse RUN [-c2f RUN] [prompt flags] IN.wav OUT.wav",
		Long: `vamp encodes IN (at -24 LUFS, as the official interface), builds the app's mask from the prompt
flags and generates what it masks: the coarse model's sampling, then, with -c2f, the
coarse-to-fine model's. The mask is the app's: a random mask of -intensity, then kept are the
-prefix and -suffix seconds and every -periodic P-th frame (-periodic-width wide); -onsets W then
masks W frames around each detected onset again (it is OR-ed in, so onsets add generated frames,
not kept ones). OUT gets IN's loudness back, as the app does, and its spectrogram is written as
OUT with .png. The defaults are the app's (mask temperature 15, argmax after half the steps).`,
		Flags: func(fs *flag.FlagSet) {
			f.register(fs)
			fs.StringVar(&coarse, "coarse", "", "a vampnet.train run of the coarse model")
			fs.StringVar(&c2f, "c2f", "", "a vampnet.train run of the coarse-to-fine model (optional)")
			fs.Int64Var(&o.PeriodicP, "periodic", o.PeriodicP, "keep one frame in every P (0: none)")
			fs.Int64Var(&o.PeriodicW, "periodic-width", o.PeriodicW, "frames kept at each period")
			fs.Float64Var(&o.PrefixS, "prefix", o.PrefixS, "seconds kept at the start")
			fs.Float64Var(&o.SuffixS, "suffix", o.SuffixS, "seconds kept at the end")
			fs.Int64Var(&o.OnsetMaskWidth, "onsets", o.OnsetMaskWidth, "frames kept around each onset (0: none)")
			fs.Float64Var(&o.RandMaskIntensity, "intensity", o.RandMaskIntensity, "share of frames masked at random before the prompts")
			fs.Float64Var(&o.Dropout, "dropout", o.Dropout, "prompt dropout probability")
			fs.Int64Var(&o.NMaskCodebooks, "mask-codebooks-from", o.NMaskCodebooks, "codebooks from this one on are always generated")
			fs.IntVar(&so.Steps, "steps", so.Steps, "sampling steps")
			fs.Float64Var(&so.Temperature, "temperature", so.Temperature, "sampling temperature")
			fs.Float64Var(&so.MaskTemperature, "mask-temperature", so.MaskTemperature, "scale of the confidence noise at the first step (the app's 1.5 x 10)")
			fs.Float64Var(&so.TopP, "top-p", so.TopP, "nucleus sampling of the coarse model (0: off; the app does not pass it to c2f)")
			fs.Float64Var(&so.SampleCutoff, "sample-cutoff", so.SampleCutoff, "argmax after this share of the steps")
			fs.Uint64Var(&seed, "seed", 0, "seeds the masks, and the sampling at every generate call as the app does (0: the masks from seed 0, the sampling unseeded)")
		},
		Run: func(env *cli.Env, args []string) error {
			if len(args) != 2 || coarse == "" {
				return cli.Usagef("want -coarse RUN, IN.wav and OUT.wav")
			}
			if !strings.HasSuffix(strings.ToLower(args[1]), ".wav") {
				return cli.Usagef("OUT must end in .wav, got %q", args[1])
			}
			in, err := f.open(coarse, c2f)
			if err != nil {
				return err
			}
			a, loud, err := readAudio(in, args[0], env)
			if err != nil {
				return err
			}
			r, err := in.Vamp(a, o, so, seed)
			if err != nil {
				return err
			}
			out, err := in.Decode(r.Codes)
			if err != nil {
				return err
			}
			out, _ = audio.Normalize(out, loud) // the app gives the output the input's loudness
			base := strings.TrimSuffix(args[1], args[1][len(args[1])-4:])
			if err := audio.WriteWAV(args[1], out, audio.PCM16); err != nil {
				return err
			}
			if err := audio.WriteSpectrogramPNG(base+".png", out); err != nil {
				return err
			}
			kept := r.Mask.MustEq(ts.IntScalar(0), false).MustSum(gotch.Int64, true).Int64Values()[0]
			total := int64(1)
			for _, d := range r.Mask.MustSize() {
				total *= d
			}
			fmt.Fprintf(env.Stdout, "%s (and .png): %.2f s; the prompt kept %d of %d codes (%.1f%%)\n", args[1], out.Duration(), kept, total, 100*float64(kept)/float64(total))
			return nil
		},
	}
}
