package api

import "testing"

func TestLinksFor(t *testing.T) {
	id := "0b8e2c4e-52e5-4c0e-9a43-5c7e3d3a2f10"
	want := Links{Self: "/v1/jobs/" + id, Events: "/v1/jobs/" + id + "/events", Page: "/jobs/" + id}
	if got := LinksFor(id); got != want {
		t.Fatalf("LinksFor(%q) = %+v, want %+v", id, got, want)
	}
	if n := testing.AllocsPerRun(100, func() { _ = LinksFor(id) }); n > 1 {
		t.Fatalf("LinksFor allocated %v times, want 1", n)
	}
}
