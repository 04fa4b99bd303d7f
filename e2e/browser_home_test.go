package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// homeRow is one job's row on the home page, read from its DOM.
type homeRow struct {
	Found bool   `json:"found"`
	State string `json:"state"`
	Stage string `json:"stage"`
	Pct   string `json:"pct"`
	Href  string `json:"href"`
	Rows  int    `json:"rows"`
}

const readHomeRow = `((id) => {
  const rows = document.querySelectorAll("#jobs tr");
  const tr = document.querySelector('#jobs tr[data-id="' + id + '"]');
  if (!tr) return { found: false, rows: rows.length };
  return { found: true, rows: rows.length, state: tr.dataset.state, stage: tr.querySelector(".stage").textContent,
    pct: tr.querySelector(".pct").textContent, href: tr.querySelector("a").getAttribute("href") };
})(%q)`

// dispatchChange tells the page its state filter changed, as a user's
// choice would.
var dispatchChange = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	_, err := chromedp.Evaluate[bool](`document.getElementById("f-state").dispatchEvent(new Event("change"))`)(ctx, t)
	return err
})

// click clicks the element sel selects, as a user would (a DOM click
// event on it).
func click(ctx context.Context, sel string) error {
	var ok bool
	if err := eval(ctx, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e || e.hidden) return false; e.click(); return true; })()`, sel), &ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no visible %s to click", sel)
	}
	return nil
}

// jobPageView is what the job page shows of its actions and outcome.
type jobPageView struct {
	State      string `json:"state"`
	Cancel     bool   `json:"cancel"` // the cancel button is shown
	Rerun      bool   `json:"rerun"`  // the rerun button is shown
	ResultCard bool   `json:"resultCard"`
	Error      string `json:"error"`
	Attempt    string `json:"attempt"`
	Running    string `json:"running"`
}

const readJobActions = `(() => {
  const $ = (id) => document.getElementById(id);
  const run = [...document.querySelectorAll("#stages li")].find((li) => li.dataset.state === "running");
  return { state: $("state").dataset.state || "", cancel: !$("cancel").hidden, rerun: !$("rerun").hidden,
    resultCard: !$("result-card").hidden, error: $("error").hidden ? "" : $("error-message").textContent,
    attempt: $("attempt").textContent, running: run ? run.dataset.index : "" };
})()`

// eval evaluates js on the page and decodes its value into v.
func eval[T any](ctx context.Context, js string, v *T) error {
	r, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err == nil {
		*v = r
	}
	return err
}

// TestBrowserHome opens the home page with the key in the fragment, submits
// a 4-stage sleep job and watches it appear on the page and advance stage
// by stage; then, on the job's page, cancels it with the Cancel button and
// runs it again with the Run again button until it succeeds. A job that
// failed shows its error, the Run again button and no result box.
func TestBrowserHome(t *testing.T) {
	t.Parallel()
	binary(t)
	b := startBrowser(t)
	s := newStack(t, false)
	s.startAPI(keyEnv()...)
	s.startWorker(keyEnv()...)

	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/#key="+acmeKey)); err != nil {
		t.Fatalf("open /: %v", err)
	}
	waitFor(t, 10*time.Second, "the home page to load the listing", func() (bool, string) {
		var conn string
		err := eval(ctx, `document.getElementById("conn").dataset.conn`, &conn)
		return err == nil && conn == "live", conn
	})
	var hash string
	if err := eval(ctx, `location.hash`, &hash); err != nil || hash != "" {
		t.Errorf("the key stays in the address bar: %q %v", hash, err)
	}

	// Stages long enough that the job is still running when the test
	// clicks Cancel, however busy the machine (900 ms ones could finish
	// first under stress-ng).
	other := s.submitAs(globexKey, `{"type":"chain","input":{"data":"g"}}`)
	j := s.submitAs(acmeKey, `{"type":"sleep","input":{"stages":4,"ms":3000}}`)
	submitted := time.Now()
	read := func() homeRow {
		var r homeRow
		if err := eval(ctx, fmt.Sprintf(readHomeRow, j.ID), &r); err != nil {
			t.Fatalf("reading the home page: %v", err)
		}
		return r
	}
	// The page polls every second: the new job shows within about that.
	waitFor(t, 15*time.Second, "the new job on the home page", func() (bool, string) {
		r := read()
		return r.Found, fmt.Sprintf("%+v", r)
	})
	t.Logf("the job appeared on the home page %v after its submit", time.Since(submitted).Round(time.Millisecond))
	var stages []string
	waitFor(t, 20*time.Second, "the home page to show the job in two stages, live", func() (bool, string) {
		r := read()
		if r.State == "running" && (len(stages) == 0 || stages[len(stages)-1] != r.Stage) {
			stages = append(stages, r.Stage)
		}
		return len(stages) >= 2, fmt.Sprintf("%+v seen %v", r, stages)
	})
	t.Logf("stages seen on the home page: %v", stages)
	var found bool
	if err := eval(ctx, fmt.Sprintf(`!!document.querySelector('#jobs tr[data-id="%s"]')`, other.ID), &found); err != nil || found {
		t.Errorf("acme's home page lists globex's job %s (%v)", other.ID, err)
	}
	b.screenshot(t, ctx, "home-running.png")

	// The state filter: the running job stays, a succeeded filter drops it.
	if err := chromedp.Do(ctx, chromedp.SetValue("#f-state", "succeeded"), dispatchChange); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the succeeded filter to hide the running job", func() (bool, string) {
		var search string
		_ = eval(ctx, `location.search`, &search)
		r := read()
		return !r.Found && search == "?state=succeeded", fmt.Sprintf("%+v %s", r, search)
	})
	if err := chromedp.Do(ctx, chromedp.SetValue("#f-state", ""), dispatchChange); err != nil {
		t.Fatal(err)
	}

	// Its link opens the job page (the key carries over in the tab).
	r := read()
	waitFor(t, 15*time.Second, "the job back on the unfiltered page", func() (bool, string) { r = read(); return r.Found, fmt.Sprintf("%+v", r) })
	if r.Href != "/jobs/"+j.ID {
		t.Fatalf("the row links to %q", r.Href)
	}
	if err := click(ctx, `#jobs tr[data-id="`+j.ID+`"] a`); err != nil {
		t.Fatalf("following the job's link: %v", err)
	}
	view := func(what string, cond func(v jobPageView) bool) jobPageView {
		t.Helper()
		var v jobPageView
		waitFor(t, 20*time.Second, what, func() (bool, string) {
			if err := eval(ctx, readJobActions, &v); err != nil {
				return false, err.Error()
			}
			return cond(v), fmt.Sprintf("%+v", v)
		})
		return v
	}
	view("the job page with a Cancel button", func(v jobPageView) bool { return v.State == "running" && v.Cancel && !v.Rerun })
	if err := click(ctx, "#cancel"); err != nil {
		t.Fatal(err)
	}
	view("the job canceled, with a Run again button and no result box", func(v jobPageView) bool {
		return v.State == "canceled" && !v.Cancel && v.Rerun && !v.ResultCard
	})
	getAcme := func(id string) *job {
		t.Helper()
		r := s.doAuth("GET", "/v1/jobs/"+id, "", nil, bearer(acmeKey)...)
		if r.status != 200 {
			t.Fatalf("GET job %s: %d %s", id, r.status, r.body)
		}
		return decodeJob(t, r.body)
	}
	if got := getAcme(j.ID); got.State != "canceled" {
		t.Fatalf("after Cancel the job is %s", got.summary())
	}
	b.screenshot(t, ctx, "job-canceled.png")
	if err := click(ctx, "#rerun"); err != nil {
		t.Fatal(err)
	}
	view("the rerun running live on the page", func(v jobPageView) bool { return v.State == "running" && v.Attempt == "2" })
	v := view("the rerun succeeded on the page", func(v jobPageView) bool { return v.State == "succeeded" && v.ResultCard && !v.Rerun })
	final := getAcme(j.ID)
	if final.State != "succeeded" || final.Attempt != 2 || final.Stages[0].Attempts != 1 {
		t.Fatalf("after Run again: %s, stage attempts %v", final.summary(), []int{final.Stages[0].Attempts, final.Stages[1].Attempts})
	}
	t.Logf("job page after the rerun: %+v", v)

	// A failed job: its error, Run again, and no "Result: not yet".
	failed := s.submitAs(acmeKey, `{"type":"sleep","input":{"stages":2,"ms":3000},"timeout":"1s","max_retries":0}`)
	waitFor(t, 30*time.Second, "the job with a 1s timeout failed", func() (bool, string) {
		j := getAcme(failed.ID)
		return j.State == "failed", j.summary()
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/jobs/"+failed.ID)); err != nil {
		t.Fatal(err)
	}
	v = view("the failed job's page", func(v jobPageView) bool { return v.State == "failed" })
	if v.Error == "" || v.ResultCard || !v.Rerun || v.Cancel {
		t.Errorf("failed job page: %+v; want its error, Run again, no result box, no Cancel", v)
	}
	var body string
	if err := eval(ctx, `document.body.innerText`, &body); err == nil && strings.Contains(body, "not yet") {
		t.Errorf("the failed job's page says \"not yet\":\n%s", body)
	}
	b.screenshot(t, ctx, "job-failed.png")

	for _, m := range b.consoleProblems() {
		if slices.ContainsFunc([]string{"net::ERR_ABORTED"}, func(s string) bool { return strings.Contains(m, s) }) {
			continue
		}
		t.Errorf("browser console: %s", m)
	}
}
