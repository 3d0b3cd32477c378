package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"math/big"
	"net"
	"net/http"
	"time"

	llibtls "github.com/lesismal/llib/std/crypto/tls"
)

// -tls serves every route over TLS, wss:// and https://, with a
// self-signed certificate made at start (ECDSA P-256, for localhost and
// 127.0.0.1; clients trust it blindly, as load.InsecureTLS does): through
// net/http's ServeTLS for wshub, gorilla, melody and gws, so that each
// library upgrades the hijacked *tls.Conn as its documentation shows;
// through nbio's engine with its TLS listener (nbio's own fork of
// crypto/tls, on its event loops); and, for wshub with -listener, through
// the hub's ServeTLS, the HTTP routes staying plain on -http (serveOwn).
var useTLS = flag.Bool("tls", false, "serve wss:// and https:// with a self-signed certificate made in memory")

// certificate is made once, when -tls first needs it.
var certificate struct {
	der [][]byte
	key *ecdsa.PrivateKey
}

func makeCertificate() {
	if certificate.key != nil {
		return
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	certificate.der, certificate.key = [][]byte{der}, key
}

func tlsConfig() *tls.Config {
	makeCertificate()
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: certificate.der, PrivateKey: certificate.key}}}
}

// serveHTTP serves srv on ln, over TLS with -tls.
func serveHTTP(srv *http.Server, ln net.Listener) error {
	if !*useTLS {
		return srv.Serve(ln)
	}
	srv.TLSConfig = tlsConfig()
	return srv.ServeTLS(ln, "", "")
}

// serveNbio serves h with nbio's engine, on its TLS listener with -tls.
func serveNbio(l nbioLib, addr string, h http.Handler) (stop func(), err error) {
	if !*useTLS {
		return l.serve(addr, h, nil)
	}
	makeCertificate()
	return l.serve(addr, h, &llibtls.Config{
		Certificates: []llibtls.Certificate{{Certificate: certificate.der, PrivateKey: certificate.key}},
	})
}
