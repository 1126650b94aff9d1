package main

const maxRequestBytes = 16 << 20
