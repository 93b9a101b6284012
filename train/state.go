package train

import (
	"encoding/json"
	"fmt"

	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/data"
)

// State is task state that a checkpoint holds beside the model and the
// optimizer: a data loader's position, PTW's running tag losses, a memory
// bank. Its plain part goes to state.json, its tensors to
// state.safetensors. Restoring must fail, naming what differs, when the
// saved state does not fit (another length, another shape); silently
// dropping it would resume into a different run.
type State interface {
	// SaveState returns the state's JSON-encodable part and its tensors
	// (nil for none); the tensors are only read.
	SaveState() (any, map[string]*ts.Tensor, error)
	// LoadState restores what SaveState saved.
	LoadState(raw json.RawMessage, tensors map[string]*ts.Tensor) error
}

// Positioned is a data loader whose position a checkpoint holds.
type Positioned interface {
	State() data.LoaderState
	Restore(data.LoaderState) error
}

// LoaderState checkpoints a data loader's position.
func LoaderState(l Positioned) State { return loaderState{l} }

type loaderState struct{ l Positioned }

func (s loaderState) SaveState() (any, map[string]*ts.Tensor, error) { return s.l.State(), nil, nil }

func (s loaderState) LoadState(raw json.RawMessage, _ map[string]*ts.Tensor) error {
	var pos data.LoaderState
	if err := json.Unmarshal(raw, &pos); err != nil {
		return err
	}
	return s.l.Restore(pos)
}

// Float64s checkpoints a slice of float64 in place (running statistics);
// restoring a slice of another length is an error.
func Float64s(v []float64) State { return floats(v) }

type floats []float64

func (f floats) SaveState() (any, map[string]*ts.Tensor, error) { return []float64(f), nil, nil }

func (f floats) LoadState(raw json.RawMessage, _ map[string]*ts.Tensor) error {
	var saved []float64
	if err := json.Unmarshal(raw, &saved); err != nil {
		return err
	}
	if len(saved) != len(f) {
		return fmt.Errorf("the checkpoint holds %d values, this run has %d", len(saved), len(f))
	}
	copy(f, saved)
	return nil
}
