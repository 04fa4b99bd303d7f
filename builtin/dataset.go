package builtin

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
)

// The synthetic data set of the train pipeline: two Gaussian blobs, one per
// class, on either side of a hyperplane through the origin whose normal (the
// "true weight vector") is random. Each column then gets its own random
// offset and scale, so that standardising matters.
//
// Everything here is a pure function of (samples, features, seed): the stages
// regenerate the data set instead of checkpointing it, and check its digest
// against the one prepare recorded. Results are bit-identical between
// workers of the same build and GOARCH. Floating-point products are wrapped
// in float64(…) so the compiler never fuses them into FMA instructions (it
// may on arm64, never on amd64), which keeps our own arithmetic identical
// across GOARCHes too; math.Exp (used here and, rarely, by NormFloat64) has
// per-GOARCH assembly, though, so a mixed amd64/arm64 fleet may differ in
// the last bit, and the digest check then says so.

// blobSeparation is the distance of each class's mean from the true
// hyperplane, in standard deviations: the best possible accuracy on the data
// set is Φ(1.25) ≈ 0.894.
const blobSeparation = 1.25

// pcgStream is the second seed word of the PCG generator ("staged\x00\x01").
const pcgStream = 0x7374616765640001

// ctxCheckRows is how many rows the loops over the data set do between two
// looks at ctx.
const ctxCheckRows = 4096

// dataset is n rows of d features (x, row-major) and their labels (y, 0 or 1).
type dataset struct {
	n, d int
	x    []float64
	y    []float64
}

func (ds *dataset) row(i int) []float64 { return ds.x[i*ds.d : (i+1)*ds.d : (i+1)*ds.d] }

// generate returns the data set of samples rows and features columns drawn
// from seed. It returns ctx.Err() if ctx is done before it is.
func generate(ctx context.Context, samples, features int, seed int64) (*dataset, error) {
	rng := rand.New(rand.NewPCG(uint64(seed), pcgStream))
	d := features
	// The true weight vector, a random unit vector.
	w := make([]float64, d)
	var norm float64
	for j := range w {
		w[j] = rng.NormFloat64()
		norm += float64(w[j] * w[j])
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		w[0], norm = 1, 1
	}
	for j := range w {
		w[j] /= norm
	}
	// Each column's offset in [-10, 10) and scale in [0.5, 5).
	offset, scale := make([]float64, d), make([]float64, d)
	for j := range d {
		offset[j] = float64(20*rng.Float64()) - 10
		scale[j] = 0.5 + float64(4.5*rng.Float64())
	}
	ds := &dataset{n: samples, d: d, x: make([]float64, samples*d), y: make([]float64, samples)}
	for i := range samples {
		if i%ctxCheckRows == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		sign := -1.0
		if rng.Uint64()&1 == 1 {
			ds.y[i], sign = 1, 1
		}
		row := ds.row(i)
		for j := range row {
			z := rng.NormFloat64() + float64(sign*blobSeparation*w[j])
			row[j] = offset[j] + float64(scale[j]*z)
		}
	}
	return ds, nil
}

// digest returns the hex SHA-256 of the data set's bits: two workers that
// regenerate it agree exactly when their digests do.
func (ds *dataset) digest() string {
	h := sha256.New()
	var hdr [16]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(ds.n))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(ds.d))
	h.Write(hdr[:])
	buf := make([]byte, 0, 8*(ds.d+1))
	for i := range ds.n {
		buf = buf[:0]
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(ds.y[i]))
		for _, v := range ds.row(i) {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
		}
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// positives returns how many rows have label 1.
func (ds *dataset) positives() int {
	var n int
	for _, y := range ds.y {
		if y == 1 {
			n++
		}
	}
	return n
}

// columnStats returns each column's mean and (population) standard
// deviation; a constant column gets standard deviation 1, so that
// standardising leaves it at 0 instead of dividing by zero.
func (ds *dataset) columnStats() (means, stds []float64) {
	means, stds = make([]float64, ds.d), make([]float64, ds.d)
	for i := range ds.n {
		for j, v := range ds.row(i) {
			means[j] += v
		}
	}
	for j := range means {
		means[j] /= float64(ds.n)
	}
	for i := range ds.n {
		for j, v := range ds.row(i) {
			dv := v - means[j]
			stds[j] += float64(dv * dv)
		}
	}
	for j := range stds {
		stds[j] = math.Sqrt(stds[j] / float64(ds.n))
		if stds[j] == 0 || math.IsNaN(stds[j]) {
			stds[j] = 1
		}
	}
	return means, stds
}

// standardize maps every feature v of column j to (v - means[j]) / stds[j],
// in place.
func (ds *dataset) standardize(means, stds []float64) {
	for i := range ds.n {
		row := ds.row(i)
		for j, v := range row {
			row[j] = (v - means[j]) / stds[j]
		}
	}
}

// logreg is a logistic regression model: P(y=1 | x) = σ(b + w·x).
type logreg struct {
	w []float64
	b float64
}

// eval returns the model's mean log-loss and accuracy on ds, and writes the
// gradient of the mean log-loss with respect to w into gw (len d) and
// returns the one with respect to b.
func (m *logreg) eval(ds *dataset, gw []float64) (loss, acc, gb float64) {
	clear(gw)
	var correct int
	for i := range ds.n {
		row := ds.row(i)
		z := m.b
		for j, v := range row {
			z += float64(m.w[j] * v)
		}
		// σ(z) and the log-loss log(1+e^z) - y·z, without overflow.
		e := math.Exp(-math.Abs(z))
		p := 1 / (1 + e)
		if z < 0 {
			p = e / (1 + e)
		}
		y := ds.y[i]
		loss += max(z, 0) + math.Log1p(e) - float64(y*z)
		if (z > 0) == (y == 1) {
			correct++
		}
		r := p - y
		for j, v := range row {
			gw[j] += float64(r * v)
		}
		gb += r
	}
	n := float64(ds.n)
	for j := range gw {
		gw[j] /= n
	}
	return loss / n, float64(correct) / n, gb / n
}

// step moves the model by -lr times the gradient (gw, gb).
func (m *logreg) step(lr float64, gw []float64, gb float64) {
	for j, g := range gw {
		m.w[j] -= float64(lr * g)
	}
	m.b -= float64(lr * gb)
}
