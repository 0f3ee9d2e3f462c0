package controlplane

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealVersion is the first byte of every sealed password: the layout
// (AES-256-GCM, 12-byte nonce) it was sealed with, so that another layout
// or key scheme can come later without guessing what a row holds.
const sealVersion = 1

// ErrNoServerKey is returned when a password must be sealed or opened and
// SERVER_SECRET_KEY is not set.
var ErrNoServerKey = errors.New("SERVER_SECRET_KEY is not set")

// SealPassword encrypts a tenant server's password for the catalog with
// AES-256-GCM under key (SERVER_SECRET_KEY, 32 bytes): the version byte, a
// random nonce, then the ciphertext and its tag. The server's name is the
// additional data: a sealed password copied onto another server's row
// does not open there.
func SealPassword(key []byte, server, password string) ([]byte, error) {
	aead, err := serverAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(password)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:], []byte(password), []byte(server)), nil
}

// OpenPassword decrypts what SealPassword made for server. A wrong key, a
// sealed password of another server, or a damaged one is an error that
// says which, never a wrong password.
func OpenPassword(key []byte, server string, sealed []byte) (string, error) {
	aead, err := serverAEAD(key)
	if err != nil {
		return "", err
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != sealVersion {
		return "", fmt.Errorf("server %s: the stored password is not one this version sealed", server)
	}
	nonce, ct := sealed[1:1+aead.NonceSize()], sealed[1+aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, ct, []byte(server))
	if err != nil {
		// GCM tells no more than "not authentic": a key other than the one
		// it was sealed with, or a row changed outside the control plane.
		return "", fmt.Errorf("server %s: the stored password does not decrypt with SERVER_SECRET_KEY (the key differs from the one it was sealed with, or the row was altered)", server)
	}
	return string(plain), nil
}

func serverAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) == 0 {
		return nil, ErrNoServerKey
	}
	if len(key) != 32 {
		return nil, errors.New("SERVER_SECRET_KEY must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
