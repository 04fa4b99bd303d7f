// Package tasks is the API for writing staged pipelines.
//
// A pipeline is a job type: a name, an input, and stages that run in order,
// each on the previous one's output. staged runs them on workers, writes
// every stage's output as a checkpoint, retries and resumes a job from its
// last completed stage, and shows its progress through the HTTP API.
//
// # A pipeline
//
// Write each stage as a function from a typed input to a typed output, and
// wrap it with StageOf:
//
//	type Text struct {
//		Text string `json:"text" doc:"the text to count the words of"`
//	}
//	type Words struct {
//		Words []string `json:"words"`
//	}
//
//	func split(ctx context.Context, in Text, p tasks.Progress) (Words, error) {
//		return Words{Words: strings.Fields(in.Text)}, nil
//	}
//
//	var WordCount = &tasks.Pipeline{
//		Name:  "wordcount",
//		Input: tasks.InputOf(Text{Text: "hello world"}, nil),
//		Stages: []tasks.Stage{
//			tasks.StageOf("split", split),
//			tasks.StageOf("count", count), // func(ctx, Words, Progress) (Count, error)
//		},
//	}
//
// A stage's output is JSON-encoded: it becomes the next stage's input and,
// after the last stage, the job's result. The first stage gets the job's
// input with its defaults applied. Keep outputs small (a checkpoint, not a
// data set): they are stored in Redis.
//
// StageOf decodes a stage's input strictly: an unknown field or a value of
// the wrong type fails the job at once, with an error naming the stage and
// the field. Registration (Registry.Register, Pipeline.Validate) refuses a
// pipeline whose typed stages do not chain: each stage's Out must be the
// next stage's In, and the first stage's In the type given to InputOf.
// A stage of type StageFunc takes and returns untyped JSON, for dynamic
// work; the check skips it.
//
// # Input
//
// InputOf describes the input from a Go struct: its json tags name the
// fields, a doc tag describes each, a jsonschema tag states limits the API
// checks (see InputOf), and the value passed in holds every default. Its
// check function refuses out-of-range values with a FieldError, which the
// API answers with 422 naming the field. InputSchema takes a JSON Schema
// instead.
//
// # Progress, cancellation, errors
//
// A stage reports how far it is with Progress.Report(fraction, partial):
// partial, when not nil, is shown as the job's partial result. Reports are
// cheap; call them as often as is natural. A stage must return when its
// ctx is done (a cancel, a timeout, a worker shutdown).
//
// A stage error is retried, from the failed stage, up to the pipeline's
// MaxRetries. Wrap it with Permanent when a retry cannot help (bad input,
// a bug). Errorf and FieldError build errors whose message is shown to the
// client; other errors are logged, and the client sees the stage failed.
//
// # Stages from the input
//
// A pipeline whose shape depends on its input sets Build, which returns the
// stages of one job from its normalised input (BuildOf gives it the input
// typed); Stages then lists the shape of the default input, and the stages
// built from the default input must chain too. Build must be deterministic. StageInfoFrom tells a
// running stage its job id, attempt and a scratch directory.
//
// # Running and testing
//
// Register pipelines in a Registry and run them with the staged command
// line (cli.Main(pipelines...) is a whole main function) or worker.Main.
// Package stagedtest runs a stage or a whole pipeline in-process, with no
// Redis, and returns every output and progress report: see its example.
//
// # The job record
//
// Job, State and the types in Job are the job record the HTTP API returns
// and package client decodes; this package links no Redis driver, so a
// client program does not either.
package tasks
