package configs

// NoWorld as the world setting turns world content off: clients use only
// what preload gives them (and what a game server adds with Client.Use).
const NoWorld = "none"
