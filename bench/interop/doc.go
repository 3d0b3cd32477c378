// Package interop checks wshub against other libraries' clients, which the
// core module cannot depend on.
package interop
