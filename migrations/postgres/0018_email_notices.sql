-- Email notices (issue 11, part 5, the email half): a notice's delivery may go by email to the
-- building's contact (or, for an escalation, to the organisation's admins), and each attempt
-- keeps the receiving server's reply (the SMTP answer of a delivered email).
ALTER TABLE notice_deliveries DROP CONSTRAINT notice_deliveries_channel_check;
ALTER TABLE notice_deliveries ADD CONSTRAINT notice_deliveries_channel_check
    CHECK (channel IN ('webhook', 'email'));
-- One email delivery per notice and address (webhook deliveries are unique per endpoint).
CREATE UNIQUE INDEX notice_deliveries_email_idx ON notice_deliveries (notice_id, recipient)
    WHERE channel = 'email';
ALTER TABLE notice_attempts ADD COLUMN reply TEXT;
