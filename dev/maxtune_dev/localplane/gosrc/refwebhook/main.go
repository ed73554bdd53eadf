// refwebhook: a reference mutating admission webhook for the benchmarks, in Go's standard
// library only. No decision: every review is allowed with one constant JSON patch (the
// maxtune.io/decision annotation, value "reference"). It serves TLS with HTTP/2 offered by
// ALPN (the API server's webhook client uses it for loopback URLs), or HTTP/1.1 alone with
// -http1, so the cost of the protocol can be measured apart from any handler. GET /stats on
// the plain stats address answers the transport's counts as JSON: connections accepted
// (each a TLS handshake), TLS sessions resumed, requests by protocol.
package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
)

type counts struct {
	Connections, Resumed, HTTP1, HTTP2 atomic.Int64
}

var (
	patchOne = base64.StdEncoding.EncodeToString([]byte(
		`[{"op":"add","path":"/metadata/annotations/maxtune.io~1decision","value":"reference"}]`))
	patchMap = base64.StdEncoding.EncodeToString([]byte(
		`[{"op":"add","path":"/metadata/annotations","value":{"maxtune.io/decision":"reference"}}]`))
)

type review struct {
	Request struct {
		UID    string `json:"uid"`
		Object struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		} `json:"object"`
	} `json:"request"`
}

func mutate(c *counts) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			c.HTTP2.Add(1)
		} else {
			c.HTTP1.Add(1)
		}
		var in review
		if body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20)); err == nil {
			_ = json.Unmarshal(body, &in) // a body that does not decode is allowed unchanged
		}
		patch := patchMap
		if in.Request.Object.Metadata.Annotations != nil {
			patch = patchOne
		}
		out := map[string]any{
			"apiVersion": "admission.k8s.io/v1",
			"kind":       "AdmissionReview",
			"response": map[string]any{
				"uid": in.Request.UID, "allowed": true, "patchType": "JSONPatch", "patch": patch,
			},
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "webhook address (TLS)")
	statsAddr := flag.String("stats-addr", "127.0.0.1:0", "plain-HTTP address of /stats")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "serving key (PEM)")
	http1 := flag.Bool("http1", false, "offer HTTP/1.1 only (no h2 in ALPN)")
	flag.Parse()

	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	c := &counts{}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", mutate(c))
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pair},
			MinVersion:   tls.VersionTLS12,
		},
		ConnState: func(conn net.Conn, state http.ConnState) {
			if state == http.StateNew {
				c.Connections.Add(1)
			}
		},
	}
	if *http1 {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	} else {
		srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
	}
	srv.TLSConfig.VerifyConnection = func(state tls.ConnectionState) error {
		if state.DidResume {
			c.Resumed.Add(1)
		}
		return nil
	}

	stats := http.NewServeMux()
	stats.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{
			"connections": c.Connections.Load(),
			"tls_resumed": c.Resumed.Load(),
			"requests":    c.HTTP1.Load() + c.HTTP2.Load(),
			"http1":       c.HTTP1.Load(),
			"http2":       c.HTTP2.Load(),
		})
	})
	stats.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ready\n") })
	go func() { log.Fatal(http.ListenAndServe(*statsAddr, stats)) }()

	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.ServeTLS(listener, "", ""))
}
