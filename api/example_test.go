package api_test

import (
	"fmt"

	"github.com/staged-dev/staged/api"
)

// A job record as GET /v1/jobs/{id} answers it, read with DecodeJob.
func ExampleDecodeJob() {
	rec := []byte(`{"id":"5b0e6f3e-8d7c-4f0a-9a43-0c1f0e2d9b11","type":"chain","state":"running",
		"stage":{"index":2,"name":"stage2","total":4},"progress":0.375,
		"stages":[{"name":"stage1","state":"succeeded","attempts":1},
		          {"name":"stage2","state":"running","attempts":1},
		          {"name":"stage3","state":"pending"},{"name":"stage4","state":"pending"}],
		"partial":{"done":3},"result":null,"error":null,"attempt":1,"queue":"default"}`)
	j, err := api.DecodeJob(rec)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: stage %d of %d (%s), %.0f%%, finished: %v\n",
		j.Type, j.Stage.Index, j.Stage.Total, j.Stage.Name, 100*j.Progress, j.State.Terminal())
	fmt.Println("partial:", string(j.Partial))
	fmt.Println("watch:", api.LinksFor(j.ID).Events)
	// Output:
	// chain: stage 2 of 4 (stage2), 38%, finished: false
	// partial: {"done":3}
	// watch: /v1/jobs/5b0e6f3e-8d7c-4f0a-9a43-0c1f0e2d9b11/events
}
