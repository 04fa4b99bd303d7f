package store

import "github.com/redis/go-redis/v9"

// evalArgs builds one EVALSHA command without boxing its arguments one by
// one. Putting a string, an int64 above 255 or a []byte into an interface
// is a heap allocation each; a pointer is not, and go-redis writes a
// *string or an *int64 as its value and a BinaryMarshaler as its bytes. So
// the values are kept in this struct's arrays and the command points into
// them: a script call of 30 arguments is one allocation (the struct)
// instead of 30, plus go-redis's copy of the keys into a new []any
// (Script.EvalSha), which Argv makes unneeded. A value past an array's
// room is boxed as usual.
type evalArgs struct {
	argv []any // the command so far, in arr while it fits
	arr  [evalArgsMax]any
	strs [20]string // createScript's: its SHA, 7 keys, 10 arguments
	ints [12]int64  // createScript's: the number of keys, 10 arguments
	raws [6]rawArg  // createScript's: 4
	ns   int        // of strs in use
	ni   int        // of ints in use
	nr   int        // of raws in use
}

// evalArgsMax is the longest command an evalArgs holds without growing
// (createScript's is 3 + 7 keys + 24 arguments).
const evalArgsMax = 36

// rawArg is a []byte argument: a *rawArg in an interface costs nothing,
// and go-redis writes it as the bytes (encoding.BinaryMarshaler).
type rawArg []byte

// MarshalBinary returns the bytes as they are (a value receiver: a boxed
// rawArg past the array's room is written the same way).
func (r rawArg) MarshalBinary() ([]byte, error) { return r, nil }

// newEvalArgs starts the EVALSHA command of script with numKeys keys,
// which come next (key), then the arguments (str, int, raw).
func newEvalArgs(script *redis.Script, numKeys int) *evalArgs {
	a := &evalArgs{}
	a.argv = a.arr[:0]
	a.add("evalsha") // a constant: no allocation
	a.str(script.Hash())
	a.int(int64(numKeys))
	return a
}

func (a *evalArgs) add(v any) { a.argv = append(a.argv, v) }

// key appends a key (a string, as go-redis's own commands do).
func (a *evalArgs) key(k string) { a.str(k) }

// str appends a string argument.
func (a *evalArgs) str(s string) { put(a, a.strs[:], &a.ns, s) }

// int appends an integer argument.
func (a *evalArgs) int(v int64) { put(a, a.ints[:], &a.ni, v) }

// raw appends a []byte argument (not copied: b must stay unchanged until
// the call is done).
func (a *evalArgs) raw(b []byte) { put(a, a.raws[:], &a.nr, rawArg(b)) }

// put appends v to a's command as a pointer to slot *n of room (one of
// a's arrays, *n of it in use), or boxed as it is once room is full.
func put[T any](a *evalArgs, room []T, n *int, v T) {
	if *n == len(room) {
		a.add(v)
		return
	}
	room[*n] = v
	a.add(&room[*n])
	*n++
}

// Argv returns the whole command: "evalsha", the script's SHA, the number
// of keys, the keys, the arguments.
func (a *evalArgs) Argv() []any { return a.argv }
