-- The schema `flask --app ivr init-db` created with create_all before migrations existed
-- (sqlite), frozen: tests/test_migrations.py upgrades a database made from it.

CREATE TABLE admins (
	id INTEGER NOT NULL,
	phone VARCHAR(20) NOT NULL,
	name VARCHAR(100) NOT NULL,
	signed_out_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (phone)
);

CREATE TABLE call_log (
	id INTEGER NOT NULL,
	at DATETIME NOT NULL,
	call_sid VARCHAR(64),
	phone VARCHAR(40),
	name VARCHAR(100),
	room VARCHAR(100),
	outcome VARCHAR(40) NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_call_log_at ON call_log (at);

CREATE INDEX ix_call_log_call_sid ON call_log (call_sid);

CREATE INDEX ix_call_log_phone ON call_log (phone);

CREATE TABLE code_sends (
	id INTEGER NOT NULL,
	phone VARCHAR(20) NOT NULL,
	sent_at DATETIME NOT NULL,
	call_sid VARCHAR(64),
	status VARCHAR(16) NOT NULL,
	purpose VARCHAR(16) NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_code_sends_call_sid ON code_sends (call_sid);

CREATE INDEX ix_code_sends_phone ON code_sends (phone);

CREATE TABLE conference_members (
	call_sid VARCHAR(64) NOT NULL,
	conference_sid VARCHAR(64) NOT NULL,
	room VARCHAR(100) NOT NULL,
	label VARCHAR(100),
	phone VARCHAR(40),
	muted BOOLEAN NOT NULL,
	joined_at DATETIME NOT NULL,
	left_at DATETIME,
	PRIMARY KEY (call_sid)
);

CREATE INDEX ix_conference_members_conference_sid ON conference_members (conference_sid);

CREATE TABLE number_guards (
	phone VARCHAR(20) NOT NULL,
	failures INTEGER NOT NULL,
	locked_until DATETIME,
	PRIMARY KEY (phone)
);

CREATE TABLE one_time_codes (
	phone VARCHAR(20) NOT NULL,
	purpose VARCHAR(16) NOT NULL,
	code_hash VARCHAR(64) NOT NULL,
	expires_at DATETIME NOT NULL,
	PRIMARY KEY (phone, purpose)
);

CREATE TABLE rooms (
	id INTEGER NOT NULL,
	name VARCHAR(100) NOT NULL,
	line_number VARCHAR(20),
	hold_music_url VARCHAR(500),
	PRIMARY KEY (id),
	UNIQUE (name),
	UNIQUE (line_number)
);

CREATE TABLE sign_in_guards (
	phone VARCHAR(20) NOT NULL,
	failures INTEGER NOT NULL,
	locked_until DATETIME,
	PRIMARY KEY (phone)
);

CREATE TABLE participants (
	id INTEGER NOT NULL,
	room_id INTEGER NOT NULL,
	phone VARCHAR(20) NOT NULL,
	name VARCHAR(100) NOT NULL,
	role VARCHAR(20) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (room_id, phone),
	FOREIGN KEY(room_id) REFERENCES rooms (id) ON DELETE CASCADE
);

CREATE INDEX ix_participants_phone ON participants (phone);

CREATE INDEX ix_participants_room_id ON participants (room_id);
