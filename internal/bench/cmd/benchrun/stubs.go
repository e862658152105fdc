package main

func (e *env) gcTree() error       { return nil }
func (e *env) goBenchmarks() error { return nil }
