// Package torchmods holds the layers, models and weight I/O that repro's
// paper packages share, built on gotch. Each paper package (mae, mlm, ...)
// is assembled from these parts; parity tests against PyTorch prove them.
package torchmods
