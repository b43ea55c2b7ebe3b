// The reference copy has the same shape as the published class.
export { default } from 'nodemailer/lib/smtp-connection/data-stream.js';
