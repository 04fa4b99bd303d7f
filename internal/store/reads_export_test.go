package store

// ReadSenders is readSenders, for the tests that hold every sender.
const ReadSenders = readSenders
