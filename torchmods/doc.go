// Package torchmods holds the layers, models and weight I/O that repro's
// paper packages share, built on gotch. Each paper package (mae, mlm, ...)
// is assembled from these parts; parity tests against PyTorch prove them.
//
// # Errors
//
// One rule for torchmods and every package built on it:
//
//   - Tensor code panics. Forward passes, losses, metrics and gotch's Must
//     ops return no error: a shape, dtype or device mistake panics with an
//     error value, the Must op's libtorch error or the layer's own check
//     (panic(fmt.Errorf(...))), so that layers compose as expressions.
//   - Everything that deals with the world outside the program returns an
//     error and never panics: reading and writing files (weights,
//     checkpoints, configs, data sets, logs), parsing and validating
//     configs and options, checking a caller's data (causal.Fit's samples).
//   - Panics become errors at a boundary only, with [Try]: the trainer
//     (train's step and optimizer update), a function that returns an error
//     and runs tensor code inside (Store.Load, LoadWeights, causal.Fit), and
//     through them the CLI. Code between boundaries neither recovers nor
//     converts.
//   - Try converts only panics whose value is an error. A runtime error
//     (nil dereference, index out of range), a string (code misusing an
//     API: a parameter registered twice, a scope closed by the wrong
//     goroutine) or any other value is a bug: it goes on up with the stack
//     of where it was raised, and nothing, the CLI included, turns it into
//     an error.
//
// # Tensor lifetime
//
//   - A tensor created while its goroutine has a [ts.Scope] open belongs to
//     the innermost one and is freed when that scope closes, unless it is
//     kept (Scope.Keep: it moves to the enclosing scope, or to the garbage
//     collector when there is none) or persisted (ts.Persist: it leaves
//     every scope for good). A Store's parameters and an optimizer's state
//     are persisted, so a model built inside a scope outlives it.
//   - A tensor created with no scope open, or persisted, is the garbage
//     collector's: a finalizer frees it, Drop frees it at once.
//
// Tensor code runs inside a scope, and every Close is deferred right after
// its NewScope:
//
//	s := ts.NewScope()
//	defer s.Close()
//
// A loop that opens a scope per iteration makes its body a function, so
// that the Close is deferred there and not after the loop. Then a panic in
// the body unwinds through the Close and reaches Try, or the user, with its
// own message. (Should a Close be skipped all the same, the enclosing
// scope's Close closes the inner scope first; it panics about the missing
// Close only when no panic is under way, so it never hides the panic that
// skipped it.)
//
// # Goroutines
//
//   - Each goroutine has its own stack of scopes, and goroutines may run
//     tensor code at the same time, each in its own scopes: the requests of
//     a service, concurrent causal.Fit calls. A scope belongs to the
//     goroutine that opened it; only that goroutine creates tensors in it,
//     keeps them and closes it. A goroutine with no scope open (a data
//     loader) never puts tensors in another goroutine's scope.
//   - A tensor handed to another goroutine must outlive the sender's scope:
//     the sender persists it (ts.Persist) before sending, or created it with
//     no scope open. The receiver then owns it: it drops it or leaves it to
//     the collector. No goroutine keeps, persists or drops a tensor that
//     another goroutine's scope owns.
//   - Tensors that goroutines read at the same time, such as a model's
//     parameters in concurrent forward passes, must not change meanwhile:
//     training a Store while serving it needs a lock.
//
// How it holds: ts.NewScope locks its goroutine to its OS thread
// (runtime.LockOSThread) until the goroutine's last scope is closed, and
// keeps the thread's innermost scope in a C thread-local variable, which
// every new tensor consults. No other goroutine runs on a locked thread,
// so a thread's scope stack is one goroutine's; a goroutine with no scope
// open runs on a thread whose variable is empty, so its tensors go to the
// collector. The lock also keeps libtorch's per-thread state (grad mode
// under ts.NoGrad, autocast, and the error an op leaves for TorchErr to
// read) with the goroutine for as long as a scope is open, which is why
// tensor code belongs in one. The variable dies with its thread: a
// goroutine that exits with a scope open (Go then ends its thread) leaves
// no stale scope for a later thread to inherit, though it leaks the
// scope's tensors, one more reason to defer Close. Code inside a scope must
// not call runtime.UnlockOSThread more often than runtime.LockOSThread.
package torchmods
