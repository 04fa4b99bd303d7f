// Package store is staged's Redis layer: the key schema (keys.go), the Lua
// scripts that read and write one job's keys atomically (scripts.go), the
// Store that runs them (create, claim, save, renew, hand off, cancel,
// rerun), group commit of concurrent writes (batch.go), the asynq task
// payload and Enqueue, the idempotency keys and the tenants' job index.
// Every key it writes has a TTL, and all of one job's keys share the hash
// tag {id}. docs/ARCHITECTURE.md describes the protocol.
package store
