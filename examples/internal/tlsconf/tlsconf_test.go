package tlsconf

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// The self-signed certificate verifies for the names the examples are
// dialed by, with itself as the only root.
func TestSelfSigned(t *testing.T) {
	cert, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Error("the certificate verifies for example.com")
	}
}

// Config loads PEM files, and refuses a certificate without its key.
func TestConfigFiles(t *testing.T) {
	cert, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	cfg, err := Config(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || string(cfg.Certificates[0].Certificate[0]) != string(cert.Certificate[0]) {
		t.Error("Config did not load the certificate in the file")
	}
	if _, err := Config(certFile, ""); err == nil {
		t.Error("Config accepted a certificate without a key")
	}
	if _, err := Config("", keyFile); err == nil {
		t.Error("Config accepted a key without a certificate")
	}
	// With no files: a fresh self-signed certificate.
	cfg, err = Config("", "")
	if err != nil || len(cfg.Certificates) != 1 {
		t.Fatalf("Config with no files: %v", err)
	}
}
