// Package api holds the types of staged's HTTP API: the job record that
// GET /v1/jobs/{id}, the SSE stream and the listing return, its states and
// options, and the pipeline definitions of GET /v1/pipelines.
//
// The server writes these types and the Go client (package client) reads
// them; the package depends on neither Redis nor asynq, so a program that only
// talks to the API links no Redis driver. Pipeline authors do not need it:
// they write stages with package tasks.
//
// The JSON encoding is the contract: field names and states are the ones
// the API documents, and a record decodes into Job whichever version of
// staged wrote it (unknown fields are ignored).
package api
