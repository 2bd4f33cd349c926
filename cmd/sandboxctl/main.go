// Command sandboxctl drives a sandboxd daemon.
package main

func main() {}
